// Faults over every backend, with and without a swarm key: a server process killed (SIGKILL)
// mid-64 MiB, a frozen (SIGSTOP) server; and, over TCP, raw malformed byte streams.
#include <future>
#include <random>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hivemind/transport/frame.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>

#include "child_server.h"
#include "test_env.h"
#include "transport_test_util.h"

extern char** environ;

namespace hivemind::transport {
namespace {

using namespace std::chrono_literals;
using testing::BackendParam;

class FaultTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override {
    ContextOptions o;
    o.ucx_config = GetParam().ucx_config;
    o.spin = 0us;
    if (GetParam().keyed) o.auth.swarm_key = testing::test_swarm_key();
    context_ = Context::create(o).value();
    worker_ = Worker::create(context_).value();
    client_ = rpc::Client::create(worker_);
    std::string tls;
    for (auto& [k, v] : GetParam().ucx_config) {
      if (k == "TLS") tls = v;
    }
    ASSERT_TRUE(child_.start(GetParam().scheme + "://127.0.0.1:0", tls, GetParam().keyed));
    address_ = child_.wait_line("ADDR ", 20s);
    ASSERT_FALSE(address_.empty()) << "the test server did not start";
  }
  void TearDown() override {
    client_.reset();
    if (worker_) worker_->stop();
  }

  std::shared_ptr<Context> context_;
  std::shared_ptr<Worker> worker_;
  std::shared_ptr<rpc::Client> client_;
  ChildServer child_;
  std::string address_;
};

TEST_P(FaultTest, ServerKilledMidTransferFailsWithinTwoSeconds) {
  auto warm = client_->call(address_, "echo", Message{}, Deadline::after(10s));
  ASSERT_TRUE(testing::wait_for(warm).is_ok());
  Message m;
  m.tensors.push_back(testing::pattern_buffer(64u << 20, 5));
  auto f = client_->call(address_, "echo", std::move(m), Deadline::after(60s));
  ASSERT_FALSE(child_.wait_line("ALLOC ", 20s).empty());  // the server is receiving the 64 MiB now
  child_.signal(SIGKILL);
  auto killed_at = SteadyClock::now();
  auto r = testing::wait_for(f, 20s);
  auto took = SteadyClock::now() - killed_at;
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().code(), StatusCode::kTimeout) << r.status().to_string();
  EXPECT_LT(took, 2s) << r.status().to_string();
}

TEST_P(FaultTest, StoppedServerGivesTimeoutAtTheDeadline) {
  auto warm = client_->call(address_, "echo", Message{}, Deadline::after(10s));
  ASSERT_TRUE(testing::wait_for(warm).is_ok());
  child_.signal(SIGSTOP);
  auto start = SteadyClock::now();
  Message m;
  m.tensors.push_back(testing::pattern_buffer(1 << 20, 1));
  auto f = client_->call(address_, "echo", std::move(m), Deadline::after(500ms));
  auto r = testing::wait_for(f, 20s);
  auto took = SteadyClock::now() - start;
  EXPECT_EQ(r.status().code(), StatusCode::kTimeout) << r.status().to_string();
  EXPECT_GE(took, 500ms);
  EXPECT_LT(took, 5s);
}

INSTANTIATE_TEST_SUITE_P(Backends, FaultTest, ::testing::ValuesIn(testing::all_backends()),
                         testing::param_name);
// Keyed: over UCX the 64 MiB and 1 MiB payloads then go by same-host copy (same_host_copy.h), read
// by the server from this process's memory and the reply read back from the server's.
INSTANTIATE_TEST_SUITE_P(KeyedBackends, FaultTest, ::testing::ValuesIn(testing::keyed_backends()),
                         testing::param_name);

// ---- raw malformed TCP byte streams ----

class RawTcpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ContextOptions o;
    o.spin = 0us;
    o.enable_ucx = false;
    context_ = Context::create(o).value();
    server_worker_ = Worker::create(context_).value();
    client_worker_ = Worker::create(context_).value();
    server_ = rpc::Server::create(server_worker_, "tcp://127.0.0.1:0").value();
    server_->handle("echo", [](Message m, rpc::Responder r) { r.reply(std::move(m)); });
    client_ = rpc::Client::create(client_worker_);
    auto colon = server_->address().rfind(':');
    port_ = static_cast<uint16_t>(std::stoi(server_->address().substr(colon + 1)));
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
    client_worker_->stop();
    server_worker_->stop();
  }

  // Sends raw bytes on a fresh connection; true when the server then closes it within 5 s.
  bool server_closes_after(const std::vector<uint8_t>& bytes, bool half_close = false) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port_);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) return false;
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    if (half_close) ::shutdown(fd, SHUT_WR);
    bool closed = false;
    auto until = SteadyClock::now() + 5s;
    while (SteadyClock::now() < until) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        closed = true;
        break;
      }
    }
    ::close(fd);
    return closed;
  }

  bool still_serves() {
    Message m;
    m.tensors.push_back(testing::pattern_buffer(10000, 3));
    auto f = client_->call(server_->address(), "echo", std::move(m), Deadline::after(10s));
    return testing::wait_for(f).is_ok();
  }

  std::vector<uint8_t> good_request() {
    FrameHeader h;
    h.kind = FrameKind::kRequest;
    h.request_id = 1;
    std::vector<uint8_t> payload(100, 1);
    std::vector<std::span<const uint8_t>> spans{payload};
    return encode_frame(h, "echo", std::vector<uint8_t>{1, 2}, spans);
  }

  std::shared_ptr<Context> context_;
  std::shared_ptr<Worker> server_worker_, client_worker_;
  std::shared_ptr<rpc::Server> server_;
  std::shared_ptr<rpc::Client> client_;
  uint16_t port_ = 0;
};

TEST_F(RawTcpTest, GoodRawRequestIsAnswered) {
  // Control for the cases below: a well-formed frame does not get the connection closed.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port_);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  auto req = good_request();
  ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  std::vector<uint8_t> got;
  auto until = SteadyClock::now() + 5s;
  while (!decode_frame(got, Limits{}).is_ok() && SteadyClock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    uint8_t buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.insert(got.end(), buf, buf + n);
  }
  ::close(fd);
  auto f = decode_frame(got, Limits{});
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ(f->header.kind, FrameKind::kResponse);
  EXPECT_EQ(f->header.request_id, 1u);
  ASSERT_EQ(f->payloads.size(), 1u);
  EXPECT_EQ(f->payloads[0].size(), 100u);
}

TEST_F(RawTcpTest, ReplyFollowedAtOnceByCloseIsStillDelivered) {
  // A server that answers and closes straight away (a draining server does exactly this): the reply
  // and the FIN reach the client's socket together, and the client must deliver the frame it has
  // read in full before it reports the closed connection.
  int listen_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listen_fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(::listen(listen_fd, 1), 0);
  socklen_t len = sizeof(sin);
  ASSERT_EQ(::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&sin), &len), 0);
  const std::string address = "tcp://127.0.0.1:" + std::to_string(ntohs(sin.sin_port));

  Message request;
  request.tensors.push_back(testing::pattern_buffer(100, 7));
  auto reply = client_->call(address, "echo", std::move(request), Deadline::after(30s));
  pollfd accept_poll{listen_fd, POLLIN, 0};
  ASSERT_EQ(::poll(&accept_poll, 1, 30000), 1) << "the client did not connect";
  int fd = ::accept(listen_fd, nullptr, nullptr);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> got;
  const Deadline read_by = Deadline::after(30s);
  while (!decode_frame(got, Limits{}).is_ok() && !read_by.expired()) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    uint8_t buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    ASSERT_GT(n, 0) << "the client closed before its request was read";
    got.insert(got.end(), buf, buf + n);
  }
  auto decoded = decode_frame(got, Limits{});
  ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();

  // Hold the client's I/O thread so that it reads the reply and the FIN in one go.
  std::promise<void> release;
  std::promise<void> held;
  std::shared_future<void> released = release.get_future().share();
  client_worker_->post([&held, released] {
    held.set_value();
    (void)released.wait_for(30s);
  });
  ASSERT_EQ(held.get_future().wait_for(30s), std::future_status::ready);
  FrameHeader h;
  h.kind = FrameKind::kResponse;
  h.request_id = decoded->header.request_id;
  std::vector<std::span<const uint8_t>> payloads(decoded->payloads.begin(),
                                                 decoded->payloads.end());
  std::vector<uint8_t> response = encode_frame(h, "", std::vector<uint8_t>{}, payloads);
  ASSERT_EQ(::send(fd, response.data(), response.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(response.size()));
  ::close(fd);
  ::close(listen_fd);
  release.set_value();

  auto r = testing::wait_for(reply, 30s);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->tensors.size(), 1u);
  EXPECT_TRUE(testing::same_bytes(r->tensors[0], testing::pattern_buffer(100, 7)));
}

TEST_F(RawTcpTest, BadMagic) {
  auto b = good_request();
  b[0] = 'X';
  EXPECT_TRUE(server_closes_after(b));
  EXPECT_TRUE(still_serves());
}

TEST_F(RawTcpTest, HugeTensorCount) {
  auto b = good_request();
  b[24] = b[25] = b[26] = b[27] = 0xff;
  EXPECT_TRUE(server_closes_after(b));
  EXPECT_TRUE(still_serves());
}

TEST_F(RawTcpTest, HugePayloadAndMetadataLengths) {
  auto b = good_request();
  for (int i = 32; i < 40; ++i)
    b[i] = 0xff;
  EXPECT_TRUE(server_closes_after(b));
  b = good_request();
  b[20] = b[21] = b[22] = b[23] = 0xff;
  EXPECT_TRUE(server_closes_after(b));
  EXPECT_TRUE(still_serves());
}

TEST_F(RawTcpTest, DescriptorsDisagreeWithPayload) {
  auto b = good_request();
  b[kFrameHeaderSize + 4] = 99;  // first tensor claims 99 bytes of a 100-byte payload
  EXPECT_TRUE(server_closes_after(b));
  EXPECT_TRUE(still_serves());
}

TEST_F(RawTcpTest, SplitMetadataFlagOverTcp) {
  auto b = good_request();
  b[6] = kFrameFlagSplitMetadata;
  EXPECT_TRUE(server_closes_after(b));
}

TEST_F(RawTcpTest, TruncatedFrameThenHalfClose) {
  auto b = good_request();
  b.resize(b.size() - 10);
  EXPECT_TRUE(server_closes_after(b, /*half_close=*/true));
  b.resize(20);  // inside the header
  EXPECT_TRUE(server_closes_after(b, true));
  EXPECT_TRUE(still_serves());
}

TEST_F(RawTcpTest, RandomGarbageNeverCrashesTheServer) {
  std::mt19937 rng(1234);
  for (int i = 0; i < 20; ++i) {
    std::vector<uint8_t> junk(64 + rng() % 512);
    for (auto& x : junk)
      x = static_cast<uint8_t>(rng());
    if (i % 2 == 0) {
      auto good = good_request();
      std::copy(good.begin(), good.begin() + 8,
                junk.begin());  // valid magic and version, garbage after
    }
    EXPECT_TRUE(server_closes_after(junk, true)) << i;
  }
  EXPECT_TRUE(still_serves());
}

}  // namespace
}  // namespace hivemind::transport
