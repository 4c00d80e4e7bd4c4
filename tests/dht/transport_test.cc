// Real nodes over the transport on loopback, in one process.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hivemind/common/wait_interrupt.h>
#include <hivemind/dht/dht.h>
#include <hivemind/dht/expert_registry.h>
#include <hivemind/transport/context.h>

namespace hivemind::dht {
namespace {

Deadline soon() {
  return Deadline::after(std::chrono::seconds(10));
}

DhtOptions loopback(std::vector<std::string> peers = {}) {
  DhtOptions options;
  options.listen = "tcp://127.0.0.1:0";
  options.initial_peers = std::move(peers);
  options.node.request_timeout = std::chrono::seconds(2);
  options.bootstrap_timeout = std::chrono::seconds(10);
  return options;
}

// A loopback port whose kernel accepts connections that nothing ever reads or answers: a DHT peer
// that is there but silent.
class SilentPeer {
 public:
  SilentPeer() {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentPeer() { ::close(fd_); }
  SilentPeer(const SilentPeer&) = delete;
  SilentPeer& operator=(const SilentPeer&) = delete;
  std::string address() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  uint16_t port_ = 0;
};

class Swarm : public ::testing::Test {
 protected:
  void SetUp() override {
    auto first = Dht::start(loopback());
    ASSERT_TRUE(first.is_ok()) << first.status().to_string();
    nodes.push_back(std::move(first).value());
    for (int i = 1; i < 8; ++i) {
      auto node = Dht::start(loopback({nodes[static_cast<size_t>(i) / 2]->address()}));
      ASSERT_TRUE(node.is_ok()) << node.status().to_string();
      nodes.push_back(std::move(node).value());
    }
  }
  std::vector<std::unique_ptr<Dht>> nodes;
};

TEST_F(Swarm, StoreAndGetAcrossNodes) {
  std::vector<DhtStoreItem> items = {{"alpha", std::nullopt, "1", nodes[0]->dht_now() + 60'000},
                                     {"beta", std::string("x"), "2", nodes[0]->dht_now() + 60'000}};
  auto stored = nodes[3]->store(items, soon());
  ASSERT_TRUE(stored.is_ok()) << stored.status().to_string();
  EXPECT_EQ((*stored)[0].stored, 5u);
  std::vector<std::string> keys = {"alpha", "beta", "gamma"};
  auto got = nodes[6]->get(keys, soon(), GetOptions{.latest = true});
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ((*got)[0]->regular->value, "1");
  EXPECT_EQ((*got)[1]->dictionary.at("x").value, "2");
  EXPECT_FALSE((*got)[2].has_value());
  EXPECT_GE(nodes[0]->peers().size(), 3u);
}

TEST_F(Swarm, ExpertRegistryOverTheTransport) {
  std::vector<std::string> uids = {"ffn.1.2", "ffn.1.3", "ffn.7"};
  ASSERT_TRUE(
      declare_experts(*nodes[2], uids, nodes[2]->address(), nodes[2]->dht_now() + 60'000, soon())
          .is_ok());
  auto experts = get_experts(*nodes[5], uids, soon());
  ASSERT_TRUE(experts.is_ok());
  for (const auto& e : *experts)
    EXPECT_EQ(e->endpoint, nodes[2]->address());
  std::vector<std::string> prefixes = {"ffn.", "ffn.1.", "ffn.7."};
  auto successors = get_active_successors(*nodes[7], prefixes, soon());
  ASSERT_TRUE(successors.is_ok());
  EXPECT_EQ((*successors)[0].size(), 2u);
  EXPECT_EQ((*successors)[1].size(), 2u);
  EXPECT_EQ((*successors)[2].count(kFlatExpert), 1u);
}

TEST_F(Swarm, LargeRepliesTravelAsAPayload) {
  // 200 subkeys of 1 KiB: a FOUND of ~200 KiB, more than rpc metadata may carry.
  std::vector<DhtStoreItem> items;
  for (int i = 0; i < 200; ++i) {
    items.push_back(
        {"big", std::to_string(i), std::string(1024, 'v'), nodes[0]->dht_now() + 60'000});
  }
  for (size_t begin = 0; begin < items.size(); begin += 50) {
    auto chunk = std::span<const DhtStoreItem>(items).subspan(begin, 50);
    auto stored = nodes[1]->store(chunk, soon());
    ASSERT_TRUE(stored.is_ok());
    for (const auto& outcome : *stored)
      EXPECT_GE(outcome.stored, 1u);
  }
  std::vector<std::string> keys = {"big"};
  auto got = nodes[4]->get(keys, soon(), GetOptions{.latest = true});
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  ASSERT_TRUE((*got)[0].has_value());
  EXPECT_EQ((*got)[0]->dictionary.size(), 200u);
}

TEST_F(Swarm, AStoppedNodeIsRoutedAround) {
  std::vector<DhtStoreItem> items = {{"survivor", std::nullopt, "v", nodes[0]->dht_now() + 60'000}};
  ASSERT_TRUE(nodes[1]->store(items, soon()).is_ok());
  nodes[0].reset();
  nodes[3].reset();
  std::vector<std::string> keys = {"survivor"};
  auto got = nodes[7]->get(keys, soon(), GetOptions{.latest = true});
  ASSERT_TRUE(got.is_ok());
  EXPECT_TRUE((*got)[0].has_value());
}

TEST(DhtTransport, BootstrapWithNoReachablePeerFailsByTheDeadline) {
  // A refused port fails fast; a peer that accepts connections but never answers fails at the
  // deadline.
  SilentPeer silent;
  const std::string silent_address = silent.address();

  DhtOptions options = loopback({silent_address, "tcp://127.0.0.1:1"});
  options.node.request_timeout = std::chrono::milliseconds(500);
  options.bootstrap_timeout = std::chrono::seconds(2);
  auto started = SteadyClock::now();
  auto result = Dht::start(options);
  auto took = SteadyClock::now() - started;
  ASSERT_FALSE(result.is_ok());
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(result.status().message().find("none of the 2 initial peer(s) answered"),
            std::string::npos)
      << result.status().message();
  EXPECT_NE(result.status().message().find(silent_address), std::string::npos);
  EXPECT_LT(took, std::chrono::seconds(4));
}

TEST(DhtTransport, WaitInterruptHookAbandonsABootstrapThatWouldWaitAnHour) {
  // What Ctrl-C does in Python: a node joining through a peer that accepts connections but never
  // answers would retry until its hour-long bootstrap deadline; the hook throws at its first poll
  // and the exception reaches the caller, whose half-started node is torn down on the way out.
  struct Interrupted {};
  SilentPeer silent;
  DhtOptions options = loopback({silent.address()});
  options.node.request_timeout = std::chrono::hours(1);
  options.bootstrap_timeout = std::chrono::hours(1);
  int polls = 0;
  set_wait_interrupt_hook([&polls] {
    ++polls;
    throw Interrupted{};
  });
  EXPECT_THROW((void)Dht::start(options), Interrupted);
  set_wait_interrupt_hook({});
  EXPECT_EQ(polls, 1);
}

TEST(DhtTransport, SharesAnExpertServersTransport) {
  // From the environment, as Dht::start's own contexts: the keyed rerun gives both the same key.
  auto context = transport::Context::create(transport::ContextOptions::from_env().value()).value();
  auto worker = transport::Worker::create(context).value();
  auto server = transport::rpc::Server::create(worker, "tcp://127.0.0.1:0").value();
  server->handle("info", [](transport::Message, transport::rpc::Responder responder) {
    responder.reply(transport::Message{{1, 2, 3}, {}});
  });
  DhtOptions options = loopback();
  options.worker = worker;
  options.server = server;
  options.client = transport::rpc::Client::create(worker);
  auto node = Dht::start(options);
  ASSERT_TRUE(node.is_ok());
  EXPECT_EQ((*node)->address(), server->address());  // the expert endpoint is the DHT address
  auto other = Dht::start(loopback({(*node)->address()}));
  ASSERT_TRUE(other.is_ok()) << other.status().to_string();
  std::vector<std::string> uids = {"ffn.0.0"};
  EXPECT_TRUE(declare_experts(**node, uids, server->address(), (*node)->dht_now() + 30'000, soon())
                  .is_ok());
  EXPECT_EQ(get_experts(**other, uids, soon()).value()[0]->endpoint, server->address());
  // The server's own method still answers.
  auto info = options.client->call(server->address(), "info", transport::Message{}, soon()).get();
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->metadata.size(), 3u);
  node->reset();
  other->reset();
  options.client->close();
  server->close();
  worker->stop();
}

TEST(DhtTransport, IdentityFileKeepsTheNodeId) {
  std::string path = ::testing::TempDir() + "/dht-identity-" + std::to_string(::getpid());
  std::remove(path.c_str());
  DhtOptions options = loopback();
  options.identity_file = path;
  NodeId first;
  {
    auto node = Dht::start(options);
    ASSERT_TRUE(node.is_ok());
    first = (*node)->node_id();
  }
  auto again = Dht::start(options);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ((*again)->node_id(), first);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace hivemind::dht
