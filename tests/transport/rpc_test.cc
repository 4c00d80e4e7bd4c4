// rpc over every backend: echo sizes, concurrency, deadlines, cancellation, limits, bad peers.
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/worker.h>

#include "transport_test_util.h"

namespace hivemind::transport {
namespace {

using namespace std::chrono_literals;
using testing::BackendParam;

// Requests a "hold" handler keeps unanswered. The handler shares ownership of this state, so a
// request that reaches the server after the test body has returned (a canceled call, say) still
// finds it alive.
struct HeldRequests {
  std::mutex mu;
  std::condition_variable arrived;
  std::vector<std::pair<Message, rpc::Responder>> requests;

  // Waits until `n` requests are held; false when the deadline passes first.
  bool wait_for_count(size_t n, std::chrono::milliseconds timeout = 60s) {
    std::unique_lock lock(mu);
    return arrived.wait_for(lock, timeout, [&] { return requests.size() >= n; });
  }
};

class RpcTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override { start({}); }

  void start(ContextOptions options, rpc::ServerOptions server_options = {},
             rpc::ClientOptions client_options = {}) {
    teardown();
    options.ucx_config = GetParam().ucx_config;
    if (GetParam().keyed) options.auth.swarm_key = testing::test_swarm_key();
    options.spin = 0us;  // tests favour low CPU use over latency on the shared 2-core machine
    auto ctx = Context::create(options);
    ASSERT_TRUE(ctx.is_ok());
    context_ = *ctx;
    if (GetParam().scheme == "ucx") {
      ASSERT_TRUE(context_->ucx_available()) << context_->ucx_unavailable_reason();
    }
    server_worker_ = Worker::create(context_, "srv").value();
    client_worker_ = Worker::create(context_, "cli").value();
    auto server =
        rpc::Server::create(server_worker_, GetParam().scheme + "://127.0.0.1:0", server_options);
    ASSERT_TRUE(server.is_ok()) << server.status().to_string();
    server_ = *server;
    server_->handle("echo", [](Message m, rpc::Responder r) { r.reply(std::move(m)); });
    client_ = rpc::Client::create(client_worker_, client_options);
    address_ = server_->address();
  }

  void teardown() {
    client_.reset();
    server_.reset();
    if (client_worker_) client_worker_->stop();
    if (server_worker_) server_worker_->stop();
    client_worker_.reset();
    server_worker_.reset();
  }
  void TearDown() override { teardown(); }

  std::shared_ptr<HeldRequests> hold(const std::string& method) {
    auto held = std::make_shared<HeldRequests>();
    server_->handle(method, [held](Message m, rpc::Responder r) {
      std::lock_guard lock(held->mu);
      held->requests.emplace_back(std::move(m), std::move(r));
      held->arrived.notify_all();
    });
    return held;
  }

  Result<Message> call(std::string_view method, Message m,
                       std::chrono::milliseconds timeout = 20s) {
    auto f = client_->call(address_, method, std::move(m), Deadline::after(timeout));
    return testing::wait_for(f, timeout + 10s);
  }

  std::shared_ptr<Context> context_;
  std::shared_ptr<Worker> server_worker_, client_worker_;
  std::shared_ptr<rpc::Server> server_;
  std::shared_ptr<rpc::Client> client_;
  std::string address_;
};

TEST_P(RpcTest, AnnouncedAddressIsDialable) {
  EXPECT_EQ(address_.rfind(GetParam().scheme + "://127.0.0.1:", 0), 0u) << address_;
  EXPECT_EQ(address_.find(":0", address_.size() - 2), std::string::npos);
}

TEST_P(RpcTest, EchoSizes) {
  // 0 and 1 byte, both sides of the AM-header budget (4 KiB) and of the rendezvous threshold (16
  // KiB, also UCX's own 8 KiB eager limits), and 64 MiB.
  std::vector<size_t> sizes{0,    1,     4095,  4096,  4097,    8191,     8192,
                            8193, 16383, 16384, 16385, 1 << 20, 64u << 20};
  uint32_t seed = 1;
  for (size_t n : sizes) {
    Message m;
    m.metadata = {1, 2, 3, static_cast<uint8_t>(n)};
    m.tensors.push_back(testing::pattern_buffer(n, seed));
    m.tensors.push_back(testing::pattern_buffer(n / 3, seed + 1));
    auto expected = m;
    auto r = call("echo", std::move(m));
    ASSERT_TRUE(r.is_ok()) << n << ": " << r.status().to_string();
    EXPECT_EQ(r->metadata, expected.metadata);
    ASSERT_EQ(r->tensors.size(), 2u);
    EXPECT_TRUE(testing::same_bytes(r->tensors[0], expected.tensors[0])) << n;
    EXPECT_TRUE(testing::same_bytes(r->tensors[1], expected.tensors[1])) << n;
    seed += 2;
  }
}

TEST_P(RpcTest, StatsCountEveryFrameOnTheWire) {
  EXPECT_EQ(server_->transport(), GetParam().scheme);
  Message m;
  m.metadata = {1, 2, 3};
  m.tensors.push_back(testing::pattern_buffer(1000, 7));
  ASSERT_TRUE(call("echo", std::move(m)).is_ok());
  // header 40 + method "echo" + metadata 3 + one descriptor 16 + payload 1000; the reply has no
  // method.
  rpc::ServerStats after_echo = server_->stats();
  EXPECT_EQ(after_echo.requests, 1u);
  EXPECT_EQ(after_echo.bytes_received, 40u + 4 + 3 + 16 + 1000);
  EXPECT_EQ(after_echo.bytes_sent, 40u + 3 + 16 + 1000);
  EXPECT_EQ(after_echo.error_replies, 0u);

  auto refused = call("no-such-method", Message{});
  ASSERT_FALSE(refused.is_ok());
  rpc::ServerStats after_error = server_->stats();
  EXPECT_EQ(after_error.requests, 2u);
  EXPECT_EQ(after_error.error_replies, 1u);
  EXPECT_EQ(after_error.bytes_received, after_echo.bytes_received + 40 + 14);
  // The error frame carries its message as metadata.
  EXPECT_EQ(after_error.bytes_sent, after_echo.bytes_sent + 40 + refused.status().message().size());
}

TEST_P(RpcTest, LargeMetadataAndManyTensors) {
  Message m;
  m.metadata.resize(60000);
  for (size_t i = 0; i < m.metadata.size(); ++i)
    m.metadata[i] = static_cast<uint8_t>(i * 7);
  for (int i = 0; i < 300; ++i)
    m.tensors.push_back(testing::pattern_buffer(static_cast<size_t>(i * 37), i));
  auto expected = m;
  auto r = call("echo", std::move(m));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->metadata, expected.metadata);
  ASSERT_EQ(r->tensors.size(), expected.tensors.size());
  for (size_t i = 0; i < expected.tensors.size(); ++i)
    EXPECT_TRUE(testing::same_bytes(r->tensors[i], expected.tensors[i]));
}

TEST_P(RpcTest, ThousandConcurrentCallsCompleteOutOfOrderExactlyOnce) {
  // The handler replies in a shuffled order from another thread.
  constexpr int kCalls = 1000;
  auto held = hold("shuffle");
  std::vector<std::atomic<int>> fired(kCalls);
  std::vector<int> ok(kCalls, 0);
  std::promise<void> all_done;
  std::atomic<int> done{0};
  for (int i = 0; i < kCalls; ++i) {
    Message m;
    m.metadata = {static_cast<uint8_t>(i), static_cast<uint8_t>(i >> 8)};
    if (i % 10 == 0) m.tensors.push_back(testing::pattern_buffer(static_cast<size_t>(i * 100), i));
    client_->call(address_, "shuffle", std::move(m), Deadline::after(60s),
                  [&, i](Result<Message> r) {
                    fired[i].fetch_add(1);
                    ok[i] = r.is_ok() && r->metadata.size() == 2 &&
                            r->metadata[0] == static_cast<uint8_t>(i) &&
                            r->metadata[1] == static_cast<uint8_t>(i >> 8);
                    if (done.fetch_add(1) + 1 == kCalls) all_done.set_value();
                  });
  }
  // Once the server holds all of them, answer in a random order.
  ASSERT_TRUE(held->wait_for_count(kCalls));
  {
    std::lock_guard lock(held->mu);
    std::shuffle(held->requests.begin(), held->requests.end(), std::mt19937(7));
    for (auto& [m, r] : held->requests)
      r.reply(std::move(m));
  }
  auto f = all_done.get_future();
  testing::wait_for(f, 60s);
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_EQ(fired[i].load(), 1) << i;
    EXPECT_TRUE(ok[i]) << i;
  }
  EXPECT_EQ(client_->pending(), 0u);
}

TEST_P(RpcTest, UnknownMethodGetsNotFound) {
  Message m;
  m.tensors.push_back(
      testing::pattern_buffer(100000, 3));  // the payload is discarded, not allocated
  auto r = call("nope", std::move(m));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound) << r.status().to_string();
  EXPECT_TRUE(call("echo", Message{}).is_ok());  // the connection still serves
}

TEST_P(RpcTest, HandlerErrorReachesCaller) {
  server_->handle(
      "fail", [](Message, rpc::Responder r) { r.reply(invalid_argument_error("bad shape [3]")); });
  auto r = call("fail", Message{});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "bad shape [3]");
}

TEST_P(RpcTest, DroppedResponderRepliesInternal) {
  server_->handle("drop", [](Message, rpc::Responder) {});
  auto r = call("drop", Message{});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST_P(RpcTest, DeadlineGivesTimeoutAndLateReplyIsDropped) {
  auto held = hold("hold");
  auto start = SteadyClock::now();
  Message m;
  m.tensors.push_back(testing::pattern_buffer(100000, 1));
  auto r = call("hold", std::move(m), 300ms);
  auto elapsed = SteadyClock::now() - start;
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kTimeout);
  EXPECT_GE(elapsed, 300ms);
  {
    std::lock_guard lock(held->mu);
    for (auto& [request, responder] : held->requests) {
      Message late;
      late.tensors.push_back(testing::pattern_buffer(100000, 2));
      responder.reply(std::move(late));
    }
  }
  auto ok = call("echo", Message{});
  EXPECT_TRUE(ok.is_ok()) << ok.status().to_string();
}

TEST_P(RpcTest, ExpiredDeadlineFailsWithoutSending) {
  auto f = client_->call(address_, "echo", Message{}, Deadline(SteadyClock::now() - 1ms));
  auto r = testing::wait_for(f);
  EXPECT_EQ(r.status().code(), StatusCode::kTimeout);
}

TEST_P(RpcTest, CancelCompletesWithCanceled) {
  auto held = hold("hold");  // outlives this body: the canceled request may arrive after it returns
  std::promise<Result<Message>> p;
  auto id = client_->call(address_, "hold", Message{}, Deadline::after(30s),
                          [&](Result<Message> r) { p.set_value(std::move(r)); });
  client_->cancel(id);
  auto f = p.get_future();
  EXPECT_EQ(testing::wait_for(f).status().code(), StatusCode::kCanceled);
}

TEST_P(RpcTest, CloseWithCallsInFlightCancelsEachOnce) {
  auto held = hold("hold");
  constexpr int kCalls = 50;
  std::vector<std::atomic<int>> fired(kCalls);
  std::vector<StatusCode> codes(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    Message m;
    m.tensors.push_back(testing::pattern_buffer(static_cast<size_t>(i) * 1000, i));
    client_->call(address_, "hold", std::move(m), Deadline::after(30s), [&, i](Result<Message> r) {
      codes[i] = r.status().code();
      fired[i].fetch_add(1);
    });
  }
  client_->close();  // synchronous: every callback has run when it returns
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_EQ(fired[i].load(), 1);
    EXPECT_EQ(codes[i], StatusCode::kCanceled);
  }
  // A closed client refuses new calls, exactly once too.
  auto f = client_->call(address_, "echo", Message{}, Deadline::after(5s));
  EXPECT_EQ(testing::wait_for(f).status().code(), StatusCode::kCanceled);
}

TEST_P(RpcTest, CallOnAStoppedWorkerCompletesOnceWithCanceled) {
  client_worker_->stop();  // the worker refuses the call's post: the call must still complete
  int fired = 0;
  Status status;
  client_->call(address_, "echo", Message{}, Deadline::after(5s), [&](Result<Message> r) {
    status = r.status();
    ++fired;
  });
  // With no I/O thread left, the callback runs on the caller's thread, inside call().
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(status.code(), StatusCode::kCanceled) << status.to_string();
  EXPECT_EQ(client_->pending(), 0u);
}

TEST_P(RpcTest, ServerInFlightLimitPlusOneIsRefused) {
  rpc::ServerOptions so;
  so.max_in_flight = 4;
  start({}, so);
  auto held = hold("hold");
  std::vector<std::future<Result<Message>>> futures;
  for (int i = 0; i < 4; ++i)
    futures.push_back(client_->call(address_, "hold", Message{}, Deadline::after(30s)));
  ASSERT_TRUE(held->wait_for_count(4));
  auto fifth = call("hold", Message{});
  EXPECT_EQ(fifth.status().code(), StatusCode::kUnavailable) << fifth.status().to_string();
  {
    std::lock_guard lock(held->mu);
    for (auto& [request, responder] : held->requests)
      responder.reply(Message{});
  }
  for (auto& f : futures)
    EXPECT_TRUE(testing::wait_for(f).is_ok());
}

TEST_P(RpcTest, WaitIdleReturnsOnceEveryReplyIsSent) {
  auto held = hold("hold");
  std::vector<std::future<Result<Message>>> futures;
  for (int i = 0; i < 2; ++i)
    futures.push_back(client_->call(address_, "hold", Message{}, Deadline::after(30s)));
  ASSERT_TRUE(held->wait_for_count(2));
  // Two requests unanswered: a deadline already passed gives up at once.
  EXPECT_FALSE(server_->wait_idle(Deadline::after(0ms)));
  EXPECT_EQ(server_->in_flight(), 2u);
  // Answered from another thread while this one waits: the last reply sent wakes the waiter.
  std::thread replier([&] {
    std::lock_guard lock(held->mu);
    for (auto& [request, responder] : held->requests)
      responder.reply(Message{});
  });
  EXPECT_TRUE(server_->wait_idle(Deadline::after(60s)));
  replier.join();
  EXPECT_EQ(server_->in_flight(), 0u);
  for (auto& f : futures)
    EXPECT_TRUE(testing::wait_for(f).is_ok());
  // Idle already: returns true without waiting, even with no time left.
  EXPECT_TRUE(server_->wait_idle(Deadline::after(0ms)));
}

TEST_P(RpcTest, ClientQueueLimitPlusOneIsRefused) {
  rpc::ClientOptions co;
  co.max_in_flight = 1;
  co.max_queued_bytes = 2000;
  start({}, {}, co);
  auto held = hold("hold");
  auto f0 = client_->call(address_, "hold", Message{}, Deadline::after(30s));  // in flight, 0 bytes
  ASSERT_TRUE(held->wait_for_count(1));
  auto sized = [](size_t n) {
    Message m;
    m.tensors.push_back(testing::pattern_buffer(n, 1));
    return m;
  };
  auto f1 = client_->call(address_, "echo", sized(1000), Deadline::after(30s));  // queued: 1000
  auto f2 =
      client_->call(address_, "echo", sized(1000), Deadline::after(30s));  // queued: 2000 = limit
  auto f3 = client_->call(address_, "echo", sized(1), Deadline::after(30s));  // limit + 1
  EXPECT_EQ(testing::wait_for(f3).status().code(), StatusCode::kUnavailable);
  {
    std::lock_guard lock(held->mu);
    held->requests[0].second.reply(Message{});
  }
  EXPECT_TRUE(testing::wait_for(f0).is_ok());
  EXPECT_TRUE(testing::wait_for(f1).is_ok());
  EXPECT_TRUE(testing::wait_for(f2).is_ok());
}

TEST_P(RpcTest, MetadataLimitPlusOneClosesOnlyThatConnection) {
  ContextOptions o;
  o.limits.max_metadata_bytes = 1000;
  start(o);
  Message at_limit;
  at_limit.metadata.resize(1000, 5);
  auto r = call("echo", std::move(at_limit));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->metadata.size(), 1000u);
  // A second client whose connection must survive the first one's bad frame.
  auto other = rpc::Client::create(client_worker_);
  auto ok1 = other->call(address_, "echo", Message{}, Deadline::after(10s));
  EXPECT_TRUE(testing::wait_for(ok1).is_ok());
  Message over;
  over.metadata.resize(1001, 5);
  auto bad = call("echo", std::move(over));
  ASSERT_FALSE(bad.is_ok());
  EXPECT_TRUE(bad.status().code() == StatusCode::kPeerClosed ||
              bad.status().code() == StatusCode::kTimeout ||
              bad.status().code() == StatusCode::kUnavailable)
      << bad.status().to_string();
  auto ok2 = other->call(address_, "echo", Message{}, Deadline::after(10s));
  EXPECT_TRUE(testing::wait_for(ok2).is_ok());
  // And the first client re-dials after its connection failed.
  EXPECT_TRUE(call("echo", Message{}).is_ok());
}

TEST_P(RpcTest, MalformedFrameFromARawEndpointClosesItServerKeepsServing) {
  std::promise<Status> closed;
  EndpointCallbacks cb;
  cb.on_error = [&](const Status& st) { closed.set_value(st); };
  auto ep = client_worker_->connect(address_, cb);
  ASSERT_TRUE(ep.is_ok());
  OutgoingFrame bad;
  bad.kind = FrameKind::kRequest;  // a request without a method is malformed
  std::promise<Status> sent;
  (*ep)->send(bad, [&](Status st) { sent.set_value(st); });
  auto fc = closed.get_future();
  Status st = testing::wait_for(fc, 10s);
  EXPECT_FALSE(st.is_ok());
  auto fs = sent.get_future();
  (void)testing::wait_for(fs);  // completes exactly once, ok or not
  EXPECT_TRUE(call("echo", Message{}).is_ok());
}

TEST_P(RpcTest, ResponseAllocatorPlacesTensors) {
  std::vector<uint8_t> landing(5000);
  Allocator into_landing = [&](const IncomingFrame& in) -> Result<std::vector<Buffer>> {
    if (in.tensor_sizes.size() != 1 || in.tensor_sizes[0] != landing.size())
      return invalid_argument_error("shape");
    return std::vector<Buffer>{
        Buffer::wrap(landing.data(), landing.size(), MemoryType::kHost, -1, nullptr)};
  };
  Message m;
  m.tensors.push_back(testing::pattern_buffer(5000, 9));
  auto expected = m.tensors[0];
  auto f = client_->call(address_, "echo", std::move(m), Deadline::after(10s), into_landing);
  auto r = testing::wait_for(f);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->tensors[0].data(), landing.data());
  EXPECT_EQ(std::memcmp(landing.data(), expected.data(), landing.size()), 0);
  // A refusing allocator fails the call with its error; the connection stays usable.
  Message m2;
  m2.tensors.push_back(testing::pattern_buffer(10, 1));
  auto f2 = client_->call(address_, "echo", std::move(m2), Deadline::after(10s), into_landing);
  EXPECT_EQ(testing::wait_for(f2).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(call("echo", Message{}).is_ok());
}

TEST_P(RpcTest, ConnectionRefusedFailsFast) {
  auto addr = GetParam().scheme + "://127.0.0.1:20999";  // nothing listens there in this suite
  auto f = client_->call(addr, "echo", Message{}, Deadline::after(10s));
  auto r = testing::wait_for(f);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().code(), StatusCode::kTimeout) << r.status().to_string();
}

INSTANTIATE_TEST_SUITE_P(KeyedBackends, RpcTest, ::testing::ValuesIn(testing::keyed_backends()),
                         testing::param_name);
INSTANTIATE_TEST_SUITE_P(Backends, RpcTest, ::testing::ValuesIn(testing::all_backends()),
                         testing::param_name);

}  // namespace
}  // namespace hivemind::transport
