// The swarm handshake: key files, the handshake codec, and keyed endpoints against members,
// strangers, keyless peers, replays, stalls and floods (docs/security.md).
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hivemind/transport/handshake.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/swarm_key.h>
#include <hivemind/transport/worker.h>

#include "transport_test_util.h"

namespace hivemind::transport {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::shared_ptr<const SwarmKey> key_of(uint8_t fill) {
  std::vector<uint8_t> bytes(32, fill);
  return std::make_shared<const SwarmKey>(SwarmKey::from_bytes(bytes).value());
}

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "hm-auth-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& content, mode_t mode) {
  std::ofstream(path) << content;
  ::chmod(path.c_str(), mode);
}

// ---- key files ----

TEST(SwarmKeyFile, GeneratedKeyRoundTripsWithMode0600) {
  TempDir dir;
  auto key = SwarmKey::generate().value();
  ASSERT_TRUE(key.write_new(dir.file("swarm.key")).is_ok());
  struct stat st {};
  ASSERT_EQ(::stat(dir.file("swarm.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  auto loaded = SwarmKey::load(dir.file("swarm.key"));
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().to_string();
  EXPECT_TRUE(std::equal(key.bytes().begin(), key.bytes().end(), loaded->bytes().begin(),
                         loaded->bytes().end()));
  EXPECT_FALSE(fs::exists(dir.file("swarm.key.tmp")));
}

TEST(SwarmKeyFile, NeverOverwritesAnExistingFile) {
  TempDir dir;
  write_file(dir.file("swarm.key"), std::string(64, 'a'), 0600);
  Status st = SwarmKey::generate().value().write_new(dir.file("swarm.key"));
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("already exists"), std::string::npos) << st.to_string();
}

TEST(SwarmKeyFile, GroupOrOtherAccessIsRefusedNamingTheFileAndTheFix) {
  TempDir dir;
  for (mode_t mode : {0640, 0604, 0660, 0644}) {
    write_file(dir.file("swarm.key"), std::string(64, 'a'), mode);
    auto loaded = SwarmKey::load(dir.file("swarm.key"));
    ASSERT_FALSE(loaded.is_ok()) << std::oct << mode;
    EXPECT_NE(loaded.status().message().find(dir.file("swarm.key")), std::string::npos);
    EXPECT_NE(loaded.status().message().find("chmod 600"), std::string::npos)
        << loaded.status().to_string();
  }
}

TEST(SwarmKeyFile, DirectoriesSymlinksMissingAndShortFilesAreRefused) {
  TempDir dir;
  fs::create_directory(dir.file("d"));
  ::chmod(dir.file("d").c_str(), 0700);
  EXPECT_NE(SwarmKey::load(dir.file("d")).status().message().find("not a regular file"),
            std::string::npos);
  write_file(dir.file("real.key"), std::string(64, 'a'), 0600);
  fs::create_symlink(dir.file("real.key"), dir.file("link.key"));
  EXPECT_NE(SwarmKey::load(dir.file("link.key")).status().message().find("symbolic link"),
            std::string::npos);
  EXPECT_NE(SwarmKey::load(dir.file("missing.key")).status().message().find("cannot open"),
            std::string::npos);
  write_file(dir.file("short.key"), "abcd\n", 0600);
  EXPECT_NE(SwarmKey::load(dir.file("short.key")).status().message().find("at least 32"),
            std::string::npos);
}

TEST(SwarmKeyFile, HexTextIsDecodedAndOtherContentIsRaw) {
  TempDir dir;
  write_file(dir.file("hex.key"), "  " + std::string(64, 'f') + "\n", 0600);
  auto hex = SwarmKey::load(dir.file("hex.key")).value();
  EXPECT_EQ(hex.bytes().size(), 32u);
  EXPECT_EQ(hex.bytes()[0], 0xff);
  write_file(dir.file("raw.key"), std::string(40, 'z'), 0600);
  EXPECT_EQ(SwarmKey::load(dir.file("raw.key")).value().bytes().size(), 40u);
}

TEST(SwarmKeyFile, ContextOptionsReadTheEnvironmentVariable) {
  TempDir dir;
  write_file(dir.file("swarm.key"), std::string(64, 'b'), 0644);
  ::setenv("HIVEMIND_SWARM_KEY_FILE", dir.file("swarm.key").c_str(), 1);
  auto refused = ContextOptions::from_env();
  ::chmod(dir.file("swarm.key").c_str(), 0600);
  auto loaded = ContextOptions::from_env();
  ::unsetenv("HIVEMIND_SWARM_KEY_FILE");
  ASSERT_FALSE(refused.is_ok());
  EXPECT_NE(refused.status().message().find("HIVEMIND_SWARM_KEY_FILE"), std::string::npos);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().to_string();
  ASSERT_NE(loaded->auth.swarm_key, nullptr);
  EXPECT_FALSE(ContextOptions::from_env().value().auth.swarm_key);
}

// ---- the codec ----

TEST(HandshakeCodec, EveryMessageRoundTrips) {
  HandshakeMessage challenge;
  challenge.type = HandshakeType::kChallenge;
  challenge.nonce.fill(7);
  challenge.address = "tcp://10.0.0.5:41234";
  challenge.proof.fill(9);
  auto decoded = decode_handshake(encode_handshake(challenge)).value();
  EXPECT_EQ(decoded.type, HandshakeType::kChallenge);
  EXPECT_EQ(decoded.nonce, challenge.nonce);
  EXPECT_EQ(decoded.address, challenge.address);
  EXPECT_EQ(decoded.proof, challenge.proof);

  HandshakeMessage refusal;
  refusal.type = HandshakeType::kRefusal;
  refusal.reason = RefusalReason::kNoKey;
  refusal.text = "no key here";
  auto back = decode_handshake(encode_handshake(refusal)).value();
  EXPECT_EQ(back.reason, RefusalReason::kNoKey);
  EXPECT_EQ(back.text, "no key here");
}

TEST(HandshakeCodec, TruncatedTrailingAndUnknownInputIsRefused) {
  HandshakeMessage hello;
  hello.type = HandshakeType::kHello;
  hello.address = "tcp://h:1";
  auto bytes = encode_handshake(hello);
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(decode_handshake({bytes.data(), n}).is_ok()) << n;
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_NE(decode_handshake(longer).status().message().find("trailing"), std::string::npos);
  auto bad_version = bytes;
  bad_version[0] = 9;
  EXPECT_NE(decode_handshake(bad_version).status().message().find("version"), std::string::npos);
  auto bad_type = bytes;
  bad_type[1] = 0;
  EXPECT_NE(decode_handshake(bad_type).status().message().find("type"), std::string::npos);
}

TEST(HandshakeCodec, ProofsDependOnKeyRoleNoncesAndAddresses) {
  HandshakeTranscript t;
  t.initiator_nonce.fill(1);
  t.acceptor_nonce.fill(2);
  t.dialed_address = "tcp://a:1";
  t.listener_address = "tcp://b:2";
  const Proof base = compute_proof(*key_of(1), HandshakeRole::kInitiator, t);
  EXPECT_TRUE(proofs_equal(base, compute_proof(*key_of(1), HandshakeRole::kInitiator, t)));
  EXPECT_FALSE(proofs_equal(base, compute_proof(*key_of(2), HandshakeRole::kInitiator, t)));
  EXPECT_FALSE(proofs_equal(base, compute_proof(*key_of(1), HandshakeRole::kAcceptor, t)));
  auto other = t;
  other.acceptor_nonce[31] ^= 1;
  EXPECT_FALSE(proofs_equal(base, compute_proof(*key_of(1), HandshakeRole::kInitiator, other)));
  other = t;
  other.dialed_address = "tcp://a:2";
  EXPECT_FALSE(proofs_equal(base, compute_proof(*key_of(1), HandshakeRole::kInitiator, other)));
}

// ---- endpoints ----

// A server and a client, each with its own Context so their keys can differ.
class AuthTest : public ::testing::TestWithParam<testing::BackendParam> {
 protected:
  void TearDown() override {
    client_.reset();
    server_.reset();
    if (client_worker_) client_worker_->stop();
    if (server_worker_) server_worker_->stop();
  }

  ContextOptions options(std::shared_ptr<const SwarmKey> key) const {
    ContextOptions o;
    o.spin = 0us;
    o.ucx_config = GetParam().ucx_config;
    o.auth.swarm_key = std::move(key);
    return o;
  }

  void start_server(ContextOptions o) {
    server_worker_ = Worker::create(Context::create(std::move(o)).value(), "srv").value();
    server_ = rpc::Server::create(server_worker_, GetParam().scheme + "://127.0.0.1:0").value();
    server_->handle("echo", [calls = calls_](Message m, rpc::Responder r) {
      calls->fetch_add(1);
      r.reply(std::move(m));
    });
  }
  void start_client(ContextOptions o) {
    client_worker_ = Worker::create(Context::create(std::move(o)).value(), "cli").value();
    client_ = rpc::Client::create(client_worker_);
  }

  Result<Message> echo(size_t bytes = 1000) {
    Message m;
    m.metadata = {1, 2, 3};
    m.tensors.push_back(testing::pattern_buffer(bytes, 5));
    auto f = client_->call(server_->address(), "echo", std::move(m), Deadline::after(60s));
    return testing::wait_for(f, 90s);
  }

  std::shared_ptr<std::atomic<int>> calls_ = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<Worker> server_worker_, client_worker_;
  std::shared_ptr<rpc::Server> server_;
  std::shared_ptr<rpc::Client> client_;
};

TEST_P(AuthTest, MembersWithTheSameKeyCall) {
  start_server(options(key_of(1)));
  start_client(options(key_of(1)));
  for (size_t bytes : {0, 1000, 100000}) {
    auto r = echo(bytes);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  }
  EXPECT_EQ(calls_->load(), 3);
  EXPECT_EQ(server_worker_->auth_stats().authenticated, 1u);
  EXPECT_EQ(client_worker_->auth_stats().authenticated, 1u);
}

TEST_P(AuthTest, WrongKeyFailsFastWithKeyMismatchOnBothSides) {
  start_server(options(key_of(1)));
  start_client(options(key_of(2)));
  auto r = echo();
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("swarm key mismatch"), std::string::npos)
      << r.status().to_string();
  EXPECT_EQ(calls_->load(), 0);
  EXPECT_EQ(client_worker_->auth_stats().key_mismatch, 1u);
  EXPECT_EQ(server_worker_->auth_stats().authenticated, 0u);
}

TEST_P(AuthTest, KeylessClientOfAKeyedServerIsToldItDidNotAuthenticate) {
  start_server(options(key_of(1)));
  start_client(options(nullptr));
  auto r = echo();
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("peer did not authenticate"), std::string::npos)
      << r.status().to_string();
  EXPECT_EQ(calls_->load(), 0);
}

TEST_P(AuthTest, KeyedClientOfAKeylessServerRefusesIt) {
  start_server(options(nullptr));
  start_client(options(key_of(1)));
  auto r = echo();
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("peer did not authenticate"), std::string::npos)
      << r.status().to_string();
  EXPECT_NE(r.status().message().find("has no swarm key"), std::string::npos);
  EXPECT_EQ(calls_->load(), 0);
}

TEST_P(AuthTest, KeylessPairWorksAsBefore) {
  start_server(options(nullptr));
  start_client(options(nullptr));
  ASSERT_TRUE(echo().is_ok());
  EXPECT_EQ(server_worker_->auth_stats().authenticated, 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, AuthTest, ::testing::ValuesIn(testing::all_backends()),
                         testing::param_name);

// ---- raw peers against a keyed TCP server ----

// A blocking loopback socket with a receive timeout as a safety net (a hang fails the test instead
// of blocking it forever; no test waits for that timeout to pass).
class RawPeer {
 public:
  explicit RawPeer(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{60, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0;
  }
  ~RawPeer() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  void send(const std::vector<uint8_t>& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  // Reads exactly n bytes; false on EOF, error or the safety timeout.
  bool read_exact(size_t n, std::vector<uint8_t>& out) {
    out.resize(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::recv(fd_, out.data() + got, n - got, 0);
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  }
  // The next whole frame, or an error at EOF.
  Result<std::vector<uint8_t>> read_frame() {
    std::vector<uint8_t> header;
    if (!read_exact(kFrameHeaderSize, header)) return peer_closed_error("eof");
    auto h = decode_header(header, Limits{});
    if (!h.is_ok()) return h.status();
    std::vector<uint8_t> rest;
    if (!read_exact(h->prefix_and_metadata_len() - kFrameHeaderSize + h->payload_len, rest))
      return peer_closed_error("eof mid-frame");
    header.insert(header.end(), rest.begin(), rest.end());
    return header;
  }
  // True when the server closed the connection (after any frames it sent first).
  bool closed_by_server() {
    uint8_t byte;
    for (;;) {
      ssize_t r = ::recv(fd_, &byte, 1, 0);
      if (r == 0) return true;
      if (r < 0) return errno == ECONNRESET;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

std::vector<uint8_t> handshake_frame(const HandshakeMessage& m) {
  FrameHeader h;
  h.kind = FrameKind::kMessage;
  auto metadata = encode_handshake(m);
  return encode_frame(h, kHandshakeMethod, metadata, {});
}

std::vector<uint8_t> echo_request(uint64_t id) {
  FrameHeader h;
  h.kind = FrameKind::kRequest;
  h.request_id = id;
  std::vector<uint8_t> payload(100, 1);
  std::vector<std::span<const uint8_t>> spans{payload};
  return encode_frame(h, "echo", std::vector<uint8_t>{1, 2}, spans);
}

HandshakeMessage handshake_in(const std::vector<uint8_t>& frame) {
  auto decoded = decode_frame(frame, Limits{}).value();
  EXPECT_EQ(decoded.method, kHandshakeMethod);
  return decode_handshake(decoded.metadata).value();
}

class RawAuthTest : public ::testing::Test {
 protected:
  void start(AuthOptions auth) {
    ContextOptions o;
    o.spin = 0us;
    o.enable_ucx = false;
    o.auth = std::move(auth);
    o.auth.swarm_key = key_;
    server_worker_ = Worker::create(Context::create(o).value(), "srv").value();
    server_ = rpc::Server::create(server_worker_, "tcp://127.0.0.1:0").value();
    server_->handle("echo", [calls = calls_](Message m, rpc::Responder r) {
      calls->fetch_add(1);
      r.reply(std::move(m));
    });
    auto colon = server_->address().rfind(':');
    port_ = static_cast<uint16_t>(std::stoi(server_->address().substr(colon + 1)));
    client_worker_ = Worker::create(Context::create(o).value(), "cli").value();
    client_ = rpc::Client::create(client_worker_);
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
    if (client_worker_) client_worker_->stop();
    if (server_worker_) server_worker_->stop();
  }

  bool member_call() {
    Message m;
    m.tensors.push_back(testing::pattern_buffer(5000, 3));
    auto f = client_->call(server_->address(), "echo", std::move(m), Deadline::after(60s));
    auto r = testing::wait_for(f, 90s);
    if (!r.is_ok()) ADD_FAILURE() << r.status().to_string();
    return r.is_ok();
  }

  // Runs the initiator's side by hand over `peer`; returns every byte it sent (the "capture").
  std::vector<uint8_t> authenticate_by_hand(RawPeer& peer) {
    std::vector<uint8_t> sent;
    HandshakeMessage hello;
    hello.type = HandshakeType::kHello;
    hello.nonce = fresh_nonce().value();
    hello.address = server_->address();
    auto hello_frame = handshake_frame(hello);
    peer.send(hello_frame);
    sent.insert(sent.end(), hello_frame.begin(), hello_frame.end());
    auto challenge = handshake_in(peer.read_frame().value());
    EXPECT_EQ(challenge.type, HandshakeType::kChallenge);
    HandshakeTranscript t{hello.nonce, challenge.nonce, hello.address, challenge.address};
    EXPECT_TRUE(proofs_equal(challenge.proof, compute_proof(*key_, HandshakeRole::kAcceptor, t)));
    HandshakeMessage proof;
    proof.type = HandshakeType::kProof;
    proof.proof = compute_proof(*key_, HandshakeRole::kInitiator, t);
    auto proof_frame = handshake_frame(proof);
    auto request = echo_request(7);
    proof_frame.insert(proof_frame.end(), request.begin(), request.end());
    peer.send(proof_frame);  // the request right behind the proof: no extra round trip
    sent.insert(sent.end(), proof_frame.begin(), proof_frame.end());
    return sent;
  }

  std::shared_ptr<const SwarmKey> key_ = key_of(3);
  std::shared_ptr<std::atomic<int>> calls_ = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<Worker> server_worker_, client_worker_;
  std::shared_ptr<rpc::Server> server_;
  std::shared_ptr<rpc::Client> client_;
  uint16_t port_ = 0;
};

TEST_F(RawAuthTest, AReplayedHandshakeIsRefusedAndDispatchesNothing) {
  start({});
  RawPeer original(port_);
  ASSERT_TRUE(original.connected());
  std::vector<uint8_t> capture = authenticate_by_hand(original);
  const std::vector<uint8_t> reply_bytes = original.read_frame().value();
  auto reply = decode_frame(reply_bytes, Limits{}).value();
  EXPECT_EQ(reply.header.kind, FrameKind::kResponse);  // the capture is a working session
  EXPECT_EQ(calls_->load(), 1);

  RawPeer replay(port_);
  replay.send(capture);  // Hello, Proof and the request, byte for byte
  auto challenge = handshake_in(replay.read_frame().value());
  EXPECT_EQ(challenge.type, HandshakeType::kChallenge);
  auto refusal = handshake_in(replay.read_frame().value());
  EXPECT_EQ(refusal.type, HandshakeType::kRefusal);
  EXPECT_EQ(refusal.reason, RefusalReason::kKeyMismatch);
  EXPECT_TRUE(replay.closed_by_server());
  EXPECT_EQ(calls_->load(), 1);
  EXPECT_EQ(server_worker_->auth_stats().key_mismatch, 1u);
}

TEST_F(RawAuthTest, ARequestBeforeTheHandshakeGetsAnErrorReplyAndIsNotDispatched) {
  start({});
  RawPeer stranger(port_);
  stranger.send(echo_request(9));
  // The request carries a payload, which the pre-authentication limits refuse outright.
  EXPECT_TRUE(stranger.closed_by_server());
  RawPeer polite(port_);
  FrameHeader h;
  h.kind = FrameKind::kRequest;
  h.request_id = 11;
  polite.send(encode_frame(h, "echo", std::vector<uint8_t>{1}, {}));
  const std::vector<uint8_t> reply_bytes = polite.read_frame().value();
  auto reply = decode_frame(reply_bytes, Limits{}).value();
  EXPECT_EQ(reply.header.kind, FrameKind::kError);
  EXPECT_EQ(reply.header.request_id, 11u);
  std::string text(reply.metadata.begin(), reply.metadata.end());
  EXPECT_NE(text.find("peer did not authenticate"), std::string::npos) << text;
  EXPECT_TRUE(polite.closed_by_server());
  EXPECT_EQ(calls_->load(), 0);
  EXPECT_TRUE(member_call());
}

TEST_F(RawAuthTest, AHandshakeThatStopsHalfwayIsCutAtTheDeadline) {
  AuthOptions auth;
  auth.handshake_timeout = 300ms;
  start(auth);
  HandshakeMessage hello;
  hello.type = HandshakeType::kHello;
  auto frame = handshake_frame(hello);
  RawPeer half(port_);
  half.send({frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(frame.size() / 2)});
  EXPECT_TRUE(half.closed_by_server());
  EXPECT_EQ(server_worker_->auth_stats().timed_out, 1u);
  EXPECT_EQ(calls_->load(), 0);
  EXPECT_TRUE(member_call());
}

TEST_F(RawAuthTest, AStoppedPeerProcessIsCutAtTheDeadline) {
  AuthOptions auth;
  auth.handshake_timeout = 300ms;
  start(auth);
  RawPeer peer(port_);
  ASSERT_TRUE(peer.connected());
  HandshakeMessage hello;
  hello.type = HandshakeType::kHello;
  auto frame = handshake_frame(hello);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child owns the handshake: it sends half a Hello and stops, as a SIGSTOPped member would.
    // It keeps only that socket: a copy of the server's end would keep the connection open.
    for (int fd = 3; fd < 4096; ++fd) {
      if (fd != peer.fd()) ::close(fd);
    }
    ssize_t n = ::send(peer.fd(), frame.data(), frame.size() / 2, MSG_NOSIGNAL);
    (void)n;
    ::raise(SIGSTOP);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, WUNTRACED), child);
  ASSERT_TRUE(WIFSTOPPED(status));
  // The parent shares the socket: it sees the server cut the stopped child's connection.
  EXPECT_TRUE(peer.closed_by_server());
  ::kill(child, SIGKILL);
  ::waitpid(child, &status, 0);
  EXPECT_EQ(server_worker_->auth_stats().timed_out, 1u);
  EXPECT_TRUE(member_call());
}

TEST_F(RawAuthTest, AFloodOfHalfOpenConnectionsLeavesMembersServedAndTheCapHolds) {
  AuthOptions auth;
  auth.max_pending = 8;
  auth.source_burst = 1000;
  auth.handshake_timeout = 120s;  // the strangers stay until evicted or torn down
  start(auth);
  ASSERT_TRUE(member_call());  // an established member connection
  constexpr int kStrangers = 40;
  std::vector<std::unique_ptr<RawPeer>> strangers;
  for (int i = 0; i < kStrangers; ++i) {
    strangers.push_back(std::make_unique<RawPeer>(port_));
    ASSERT_TRUE(strangers.back()->connected());
    if (i % 4 == 0) {
      ASSERT_TRUE(member_call());
    }
  }
  // Each stranger beyond the cap evicts the oldest waiting one: the first kStrangers - 8 are cut.
  for (int i = 0; i < kStrangers - 8; ++i)
    EXPECT_TRUE(strangers[i]->closed_by_server()) << i;
  EXPECT_EQ(server_worker_->auth_stats().evicted, static_cast<uint64_t>(kStrangers - 8));
  // A member dialing now, with the cap full of strangers, still gets in.
  client_.reset();
  client_worker_->stop();
  ContextOptions o;
  o.spin = 0us;
  o.enable_ucx = false;
  o.auth.swarm_key = key_;
  client_worker_ = Worker::create(Context::create(o).value(), "cli2").value();
  client_ = rpc::Client::create(client_worker_);
  EXPECT_TRUE(member_call());
  EXPECT_EQ(calls_->load(), 1 + kStrangers / 4 + 1);
}

TEST_F(RawAuthTest, TheSourceRateLimitRefusesTheExcessWithAReason) {
  AuthOptions auth;
  auth.source_burst = 3;
  auth.source_rate_per_second = 0.001;
  start(auth);
  std::vector<std::unique_ptr<RawPeer>> admitted;
  for (int i = 0; i < 3; ++i)
    admitted.push_back(std::make_unique<RawPeer>(port_));
  RawPeer excess(port_);
  auto refusal = handshake_in(excess.read_frame().value());
  EXPECT_EQ(refusal.type, HandshakeType::kRefusal);
  EXPECT_EQ(refusal.reason, RefusalReason::kBusy);
  EXPECT_TRUE(excess.closed_by_server());
  EXPECT_EQ(server_worker_->auth_stats().rate_limited, 1u);
}

}  // namespace
}  // namespace hivemind::transport
