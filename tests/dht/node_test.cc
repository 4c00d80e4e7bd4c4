// The node core fed by hand (a fake network and a manual clock), and small simulated networks.
#include <gtest/gtest.h>

#include <hivemind/dht/node.h>
#include <hivemind/dht/sim_network.h>

#include "sim_helpers.h"

namespace hivemind::dht {
namespace {

using wire::ErrorCode;
using wire::MessageType;

struct Sent {
  std::string to;
  uint64_t request_id;
  wire::Message message;
};

class FakeNetwork final : public NodeNetwork {
 public:
  void send_request(const std::string& to, uint64_t request_id, std::vector<uint8_t> frame,
                    SteadyTime) override {
    auto decoded = wire::decode(frame, WireLimits{});
    ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
    sent.push_back({to, request_id, std::move(decoded).value()});
  }
  std::vector<Sent> sent;
};

class NodeTest : public ::testing::Test {
 protected:
  NodeTest() : clock(1'700'000'000'000) {}
  std::unique_ptr<Node> make(NodeOptions options = {}) {
    return std::make_unique<Node>(options, Contact{NodeId::from_key("me"), "tcp://10.0.0.1:21000"},
                                  clock, net, 7);
  }
  std::vector<uint8_t> request(MessageType type, wire::Body body,
                               const std::string& from = "tcp://10.0.0.2:21000",
                               NodeId sender = NodeId::from_key("peer"), int64_t skew_ms = 0) {
    wire::Header h;
    h.type = type;
    h.request_id = 42;
    h.sender = sender;
    h.sender_time = clock.dht_now() + skew_ms;
    h.sender_address = from;
    return wire::encode({h, std::move(body)});
  }
  std::vector<uint8_t> reply_to(const Sent& sent, MessageType type, wire::Body body, NodeId sender,
                                int64_t skew_ms = 0, std::optional<uint64_t> id = std::nullopt) {
    wire::Header h;
    h.type = type;
    h.request_id = id ? *id : sent.request_id;
    h.sender = sender;
    h.sender_time = clock.dht_now() + skew_ms;
    h.sender_address = sent.to;
    return wire::encode({h, std::move(body)});
  }
  static wire::Message decode(const std::vector<uint8_t>& frame) {
    return wire::decode(frame, WireLimits{}).value();
  }

  ManualClock clock;
  FakeNetwork net;
};

TEST_F(NodeTest, RepliesMustMatchAnOutstandingRequestFromTheSamePeer) {
  auto node = make();
  std::optional<Result<Contact>> result;
  node->ping("tcp://10.0.0.9:21000", clock.steady_now() + Milliseconds(5000),
             [&](Result<Contact> r) { result = r; });
  ASSERT_EQ(net.sent.size(), 1u);
  const Sent& ping = net.sent[0];
  NodeId peer = NodeId::from_key("nine");
  // From another address: ignored.
  node->handle_reply("tcp://10.0.0.8:21000", ping.request_id,
                     reply_to(ping, MessageType::kPong, std::monostate{}, peer));
  // An id we never used: ignored.
  node->handle_reply(
      ping.to, ping.request_id + 1,
      reply_to(ping, MessageType::kPong, std::monostate{}, peer, 0, ping.request_id + 1));
  EXPECT_EQ(node->stats().unmatched_replies, 2u);
  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(node->pending_requests(), 1u);
  node->handle_reply(ping.to, ping.request_id,
                     reply_to(ping, MessageType::kPong, std::monostate{}, peer));
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->is_ok());
  EXPECT_EQ((*result)->id, peer);
  EXPECT_TRUE(node->routing_table().contains(peer));  // it answered: admitted
  // A duplicate of the same reply matches nothing any more.
  node->handle_reply(ping.to, ping.request_id,
                     reply_to(ping, MessageType::kPong, std::monostate{}, peer));
  EXPECT_EQ(node->stats().unmatched_replies, 3u);
}

TEST_F(NodeTest, ReplyOfTheWrongTypeFailsTheRequest) {
  auto node = make();
  std::optional<Result<Contact>> result;
  node->ping("tcp://10.0.0.9:21000", clock.steady_now() + Milliseconds(5000),
             [&](Result<Contact> r) { result = r; });
  const Sent& ping = net.sent[0];
  node->handle_reply(
      ping.to, ping.request_id,
      reply_to(ping, MessageType::kStored, wire::StoreReply{}, NodeId::from_key("x")));
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->is_ok());
  EXPECT_FALSE(node->routing_table().contains(NodeId::from_key("x")));
  EXPECT_EQ(node->stats().unmatched_replies, 1u);
  EXPECT_EQ(node->stats().unanswered_requests, 0u);  // it did answer, wrongly
}

TEST_F(NodeTest, MalformedReplyFailsTheRequestAndCountsAsMalformedNotUnanswered) {
  auto node = make();
  std::optional<Result<Contact>> result;
  node->ping("tcp://10.0.0.9:21000", clock.steady_now() + Milliseconds(5000),
             [&](Result<Contact> r) { result = r; });
  const Sent& ping = net.sent[0];
  std::vector<uint8_t> truncated =
      reply_to(ping, MessageType::kPong, std::monostate{}, NodeId::from_key("nine"));
  truncated.resize(truncated.size() / 2);
  node->handle_reply(ping.to, ping.request_id, truncated);
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->is_ok());
  EXPECT_EQ(node->pending_requests(), 0u);
  EXPECT_EQ(node->stats().malformed_replies, 1u);
  EXPECT_EQ(node->stats().malformed_requests, 0u);
  EXPECT_EQ(node->stats().unanswered_requests, 0u);
}

TEST_F(NodeTest, TimeoutCompletesExactlyOnce) {
  NodeOptions options;
  options.request_timeout = Milliseconds(1000);
  auto node = make(options);
  int calls = 0;
  Status status;
  node->ping("tcp://10.0.0.9:21000", clock.steady_now() + Milliseconds(5000),
             [&](Result<Contact> r) {
               ++calls;
               status = r.status();
             });
  EXPECT_EQ(node->next_wakeup(), clock.steady_now() + Milliseconds(1000));
  clock.advance(Milliseconds(999));
  node->tick();
  EXPECT_EQ(calls, 0);
  clock.advance(Milliseconds(1));
  node->tick();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(status.code(), StatusCode::kTimeout);
  EXPECT_EQ(node->stats().unanswered_requests, 1u);
  const Sent& ping = net.sent[0];
  node->handle_reply(
      ping.to, ping.request_id,
      reply_to(ping, MessageType::kPong, std::monostate{}, NodeId::from_key("late")));
  EXPECT_EQ(calls, 1);  // a late answer completes nothing
}

TEST_F(NodeTest, MalformedAndNonRequestFramesGetErrors) {
  auto node = make();
  std::vector<uint8_t> garbage = {1, 2, 3, 4};
  auto reply = decode(node->handle_request(garbage));
  EXPECT_EQ(reply.header.type, MessageType::kError);
  EXPECT_EQ(std::get<wire::ErrorReply>(reply.body).code, ErrorCode::kMalformed);
  reply = decode(node->handle_request(request(MessageType::kPong, std::monostate{})));
  EXPECT_EQ(std::get<wire::ErrorReply>(reply.body).code, ErrorCode::kMalformed);
  auto frame = request(MessageType::kPing, std::monostate{});
  frame[2] = wire::kVersion + 1;
  reply = decode(node->handle_request(frame));
  EXPECT_EQ(std::get<wire::ErrorReply>(reply.body).code, ErrorCode::kUnsupportedVersion);
  EXPECT_EQ(node->stats().malformed_requests, 3u);
  EXPECT_EQ(node->stats().malformed_replies, 0u);
}

TEST_F(NodeTest, RateLimitPerPeerLimitPlusOne) {
  NodeOptions options;
  options.rate.per_peer_per_second = 5;
  auto node = make(options);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(
        decode(node->handle_request(request(MessageType::kPing, std::monostate{}))).header.type,
        MessageType::kPong);
  }
  auto reply = decode(node->handle_request(request(MessageType::kPing, std::monostate{})));
  ASSERT_EQ(reply.header.type, MessageType::kError);
  EXPECT_EQ(std::get<wire::ErrorReply>(reply.body).code, ErrorCode::kRateLimited);
  // Others are still served.
  EXPECT_EQ(decode(node->handle_request(request(MessageType::kPing, std::monostate{},
                                                "tcp://10.0.0.3:21000", NodeId::from_key("other"))))
                .header.type,
            MessageType::kPong);
  EXPECT_EQ(node->stats().rate_limited, 1u);
}

TEST_F(NodeTest, GlobalRateLimitPlusOne) {
  NodeOptions options;
  options.rate.global_per_second = 3;
  auto node = make(options);
  for (int i = 0; i < 3; ++i) {
    auto from = "tcp://10.0.1." + std::to_string(i + 1) + ":1";
    EXPECT_EQ(decode(node->handle_request(request(MessageType::kPing, std::monostate{}, from,
                                                  NodeId::from_key(from))))
                  .header.type,
              MessageType::kPong);
  }
  auto reply = decode(
      node->handle_request(request(MessageType::kPing, std::monostate{}, "tcp://10.0.2.1:1")));
  EXPECT_EQ(reply.header.type, MessageType::kError);
}

TEST_F(NodeTest, ClockSkewIsRefusedAndNotAdmitted) {
  NodeOptions options;
  options.max_clock_skew = Milliseconds(3000);
  options.request_timeout = Milliseconds(1000);
  auto node = make(options);
  auto reply = decode(
      node->handle_request(request(MessageType::kPing, std::monostate{}, "tcp://10.0.0.2:21000",
                                   NodeId::from_key("peer"), 4001 + 1000)));
  ASSERT_EQ(reply.header.type, MessageType::kError);
  EXPECT_EQ(std::get<wire::ErrorReply>(reply.body).code, ErrorCode::kClockSkew);

  // Extreme times from a peer must not overflow the arithmetic (found by the fuzzer).
  for (int64_t extreme : {INT64_MIN, INT64_MAX}) {
    wire::Header h;
    h.type = MessageType::kPing;
    h.request_id = 1;
    h.sender = NodeId::from_key("extreme");
    h.sender_time = extreme;
    h.sender_address = "tcp://10.0.0.5:21000";
    auto r = decode(node->handle_request(wire::encode({h, std::monostate{}})));
    EXPECT_EQ(std::get<wire::ErrorReply>(r.body).code, ErrorCode::kClockSkew);
  }

  // A peer that answers our ping with a clock 5 s off is not admitted.
  node->ping("tcp://10.0.0.9:21000", clock.steady_now() + Milliseconds(5000), nullptr);
  const Sent& ping = net.sent.back();
  node->handle_reply(
      ping.to, ping.request_id,
      reply_to(ping, MessageType::kPong, std::monostate{}, NodeId::from_key("skewed"), 5000));
  EXPECT_FALSE(node->routing_table().contains(NodeId::from_key("skewed")));
  EXPECT_EQ(node->stats().skewed_peers, 1u);
  // Within the bound it is.
  node->ping("tcp://10.0.0.10:21000", clock.steady_now() + Milliseconds(5000), nullptr);
  const Sent& ping2 = net.sent.back();
  node->handle_reply(
      ping2.to, ping2.request_id,
      reply_to(ping2, MessageType::kPong, std::monostate{}, NodeId::from_key("fine"), 2500));
  EXPECT_TRUE(node->routing_table().contains(NodeId::from_key("fine")));
}

TEST_F(NodeTest, RequestersAreAdmittedOnlyAfterAnsweringAProbe) {
  NodeOptions options;
  options.request_timeout = Milliseconds(1000);
  auto node = make(options);
  NodeId peer = NodeId::from_key("requester");
  node->handle_request(request(MessageType::kFind,
                               wire::FindRequest{false, {NodeId::from_key("k")}},
                               "tcp://10.0.0.2:21000", peer));
  EXPECT_FALSE(node->routing_table().contains(peer));
  ASSERT_EQ(net.sent.size(), 1u);
  const Sent& probe = net.sent[0];
  EXPECT_EQ(probe.to, "tcp://10.0.0.2:21000");
  EXPECT_EQ(probe.message.header.type, MessageType::kPing);
  EXPECT_EQ(node->stats().probes_sent, 1u);
  node->handle_reply(probe.to, probe.request_id,
                     reply_to(probe, MessageType::kPong, std::monostate{}, peer));
  EXPECT_TRUE(node->routing_table().contains(peer));

  // A forged sender whose address does not answer never gets in.
  NodeId forged = NodeId::from_key("forged");
  node->handle_request(
      request(MessageType::kPing, std::monostate{}, "tcp://10.0.0.66:21000", forged));
  clock.advance(Milliseconds(1000));
  node->tick();
  EXPECT_FALSE(node->routing_table().contains(forged));
  // Someone else answering at that address with another id does not admit the forged id either.
  node->handle_request(
      request(MessageType::kPing, std::monostate{}, "tcp://10.0.0.67:21000", forged));
  // (probed recently: no second probe for the same id)
  EXPECT_EQ(node->stats().probes_sent, 2u);
}

TEST_F(NodeTest, AnotherIdAnsweringAProbeFailsItAndIsCountedAsAReplacedPeer) {
  auto node = make();
  NodeId claimed = NodeId::from_key("claimed");
  node->handle_request(
      request(MessageType::kPing, std::monostate{}, "tcp://10.0.0.2:21000", claimed));
  ASSERT_EQ(net.sent.size(), 1u);
  const Sent& probe = net.sent[0];
  NodeId other = NodeId::from_key("other");
  node->handle_reply(probe.to, probe.request_id,
                     reply_to(probe, MessageType::kPong, std::monostate{}, other));
  EXPECT_EQ(node->pending_requests(), 0u);
  EXPECT_EQ(node->stats().replaced_peers, 1u);
  EXPECT_EQ(node->stats().unanswered_requests, 0u);
  EXPECT_FALSE(node->routing_table().contains(claimed));
  EXPECT_FALSE(node->routing_table().contains(other));
}

TEST_F(NodeTest, StoreAndFindServeFromStorage) {
  auto node = make();
  NodeId key = NodeId::from_key("k");
  DhtTime exp = clock.dht_now() + 60'000;
  auto stored = decode(node->handle_request(request(
      MessageType::kStore, wire::StoreRequest{{{key, std::string("1"), "one", exp, false},
                                               {key, std::string("2"), "two", exp + 1, true},
                                               {key, std::nullopt, "old", exp - 1, false}}})));
  auto statuses = std::get<wire::StoreReply>(stored.body).statuses;
  ASSERT_EQ(statuses.size(), 3u);
  EXPECT_EQ(statuses[0], wire::StoreStatus::kStored);
  EXPECT_EQ(statuses[1], wire::StoreStatus::kStored);    // into the cache
  EXPECT_EQ(statuses[2], wire::StoreStatus::kOutdated);  // older than the dictionary's newest
  auto found =
      decode(node->handle_request(request(MessageType::kFind, wire::FindRequest{false, {key}})));
  const auto& entry = std::get<wire::FindReply>(found.body).entries.at(0);
  EXPECT_EQ(entry.record.dictionary.size(), 2u);  // storage and cache merged
  auto nodes_only =
      decode(node->handle_request(request(MessageType::kFind, wire::FindRequest{true, {key}})));
  EXPECT_TRUE(std::get<wire::FindReply>(nodes_only.body).entries.at(0).record.empty());
  // Too far in the future: refused (the pinning attack).
  auto far = decode(node->handle_request(request(
      MessageType::kStore, wire::StoreRequest{{{key, std::string("3"), "x",
                                                clock.dht_now() + (DhtTime(1) << 50), false}}})));
  EXPECT_EQ(std::get<wire::StoreReply>(far.body).statuses[0], wire::StoreStatus::kTooFarInFuture);
}

TEST_F(NodeTest, ClientModeStoresNothingForOthers) {
  NodeOptions options;
  options.client_mode = true;
  auto node = make(options);
  auto stored = decode(node->handle_request(
      request(MessageType::kStore, wire::StoreRequest{{{NodeId::from_key("k"), std::nullopt, "v",
                                                        clock.dht_now() + 1000, false}}})));
  EXPECT_EQ(std::get<wire::StoreReply>(stored.body).statuses[0], wire::StoreStatus::kRefused);
  node->ping("tcp://10.0.0.9:21000", clock.steady_now() + Milliseconds(5000), nullptr);
  EXPECT_TRUE(net.sent.back().message.header.flags & wire::kFlagClient);
  EXPECT_TRUE(net.sent.back().message.header.sender_address.empty());
}

TEST_F(NodeTest, ShutdownCancelsOperations) {
  auto node = make();
  Status status;
  node->ping("tcp://10.0.0.9:21000", clock.steady_now() + Milliseconds(5000),
             [&](Result<Contact> r) { status = r.status(); });
  node->shutdown();
  EXPECT_EQ(status.code(), StatusCode::kCanceled);
  EXPECT_EQ(node->running_operations(), 0u);
}

// ---- small simulated networks ----

TEST(SimNode, BootstrapWithNoReachablePeerFailsClearlyByTheDeadline) {
  SimNetwork net(SimOptions{.seed = 1});
  NodeOptions options = testing::sim_node_options();
  size_t node = net.add_node(options);
  SteadyTime start = net.now();
  Status status = net.bootstrap(node, {"tcp://10.9.9.9:21000", "tcp://10.9.9.8:21000"},
                                std::chrono::seconds(10));
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("none of the 2 initial peer(s) answered"), std::string::npos)
      << status.message();
  EXPECT_NE(status.message().find("tcp://10.9.9.9:21000"), std::string::npos);
  EXPECT_LE(net.now() - start, std::chrono::seconds(10));
  EXPECT_EQ(net.node(node).running_operations(), 0u);
}

TEST(SimNode, BootstrapAgainstRefusedPortsFailsFast) {
  SimNetwork net(SimOptions{.seed = 1, .refuse_dead = true});
  size_t node = net.add_node(testing::sim_node_options());
  SteadyTime start = net.now();
  Status status = net.bootstrap(node, {"tcp://10.9.9.9:21000"}, std::chrono::seconds(3));
  EXPECT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("connection refused"), std::string::npos) << status.message();
  EXPECT_LE(net.now() - start, std::chrono::seconds(3));
}

TEST(SimNode, FirstNodeBootstrapsAlone) {
  SimNetwork net;
  size_t node = net.add_node(testing::sim_node_options());
  EXPECT_TRUE(net.bootstrap(node, {}).is_ok());
  EXPECT_TRUE(net.bootstrap(node, {net.address(node)}).is_ok());  // our own address is skipped
}

class SmallNetwork : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng(5);
    ASSERT_TRUE(testing::grow_network(net, 40, testing::sim_node_options(), rng));
  }
  size_t holders(const NodeId& key) {
    size_t count = 0;
    for (size_t i : net.alive_nodes())
      count += net.node(i).storage().contains(key, net.dht_now());
    return count;
  }
  SimNetwork net{SimOptions{.seed = 5}};
};

TEST_F(SmallNetwork, StoreReachesRClosestAndGetFindsIt) {
  NodeId key = NodeId::from_key("hello");
  auto stored = net.store(3, {{key, std::nullopt, "world", net.dht_now() + 60'000, false}});
  ASSERT_TRUE(stored.status.is_ok());
  EXPECT_EQ(stored.items[0].stored, 5u);
  EXPECT_EQ(holders(key), 5u);
  // Exactly the 5 nodes closest to the key hold it.
  auto truth = testing::true_nearest(net, key, 5);
  for (const auto& id : truth) {
    for (size_t i : net.alive_nodes()) {
      if (net.node(i).self().id == id) {
        EXPECT_TRUE(net.node(i).storage().contains(key, net.dht_now()));
      }
    }
  }
  auto got = net.get(17, {key}, GetOptions{.latest = true});
  ASSERT_TRUE(got.records[0].has_value());
  EXPECT_EQ(got.records[0]->regular->value, "world");
  EXPECT_GE(got.hops[0], 1);
  // The value is now cached at the getter, so a plain get answers locally.
  auto local = net.get(17, {key});
  EXPECT_EQ(local.rpcs, 0u);
  EXPECT_EQ(local.hops[0], 0);
}

TEST_F(SmallNetwork, NewerValueWinsAcrossReplicas) {
  NodeId key = NodeId::from_key("versioned");
  DhtTime t = net.dht_now();
  ASSERT_TRUE(net.store(1, {{key, std::nullopt, "v2", t + 20'000, false}}).items[0].ok());
  auto older = net.store(2, {{key, std::nullopt, "v1", t + 10'000, false}});
  EXPECT_EQ(older.items[0].stored, 0u);
  EXPECT_EQ(older.items[0].rejection, wire::StoreStatus::kOutdated);
  EXPECT_EQ(net.get(3, {key}, GetOptions{.latest = true}).records[0]->regular->value, "v2");
}

TEST_F(SmallNetwork, DictionarySubkeysFromManyWritersMerge) {
  NodeId key = NodeId::from_key("ffn.");
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(net.store(static_cast<size_t>(i), {{key, std::to_string(i), "e" + std::to_string(i),
                                                    net.dht_now() + 30'000, false}})
                    .items[0]
                    .ok());
  }
  auto got = net.get(30, {key}, GetOptions{.latest = true});
  ASSERT_TRUE(got.records[0].has_value());
  EXPECT_EQ(got.records[0]->dictionary.size(), 8u);
}

TEST_F(SmallNetwork, ValuesExpire) {
  NodeId key = NodeId::from_key("short");
  ASSERT_TRUE(net.store(0, {{key, std::nullopt, "x", net.dht_now() + 2'000, false}}).items[0].ok());
  net.run_for(std::chrono::seconds(3));
  EXPECT_FALSE(net.get(9, {key}, GetOptions{.latest = true}).records[0].has_value());
}

TEST_F(SmallNetwork, NewNodeReceivesTheRecordsItShouldHold) {
  // A node joining right next to a key gets that key from the current holders (join transfer).
  NodeId key = NodeId::from_key("moving");
  ASSERT_TRUE(
      net.store(0, {{key, std::nullopt, "x", net.dht_now() + 60'000, false}}).items[0].ok());
  NodeId next_to_key = key.with_bit(159, !key.bit(159));
  size_t fresh = net.add_node(testing::sim_node_options(), next_to_key);
  ASSERT_TRUE(net.bootstrap(fresh, {net.address(0)}).is_ok());
  net.run_for(std::chrono::seconds(2));
  EXPECT_TRUE(net.node(fresh).storage().contains(key, net.dht_now()));
  uint64_t pushed = 0;
  for (size_t i : net.alive_nodes())
    pushed += net.node(i).stats().transfer_items_sent;
  EXPECT_GE(pushed, 1u);
}

TEST_F(SmallNetwork, GetPushesACopyToTheNearestNodeLackingIt) {
  NodeId key = NodeId::from_key("cached");
  ASSERT_TRUE(
      net.store(0, {{key, std::nullopt, "x", net.dht_now() + 60'000, false}}).items[0].ok());
  // Kill the replicas but one... then the get passes nodes without it and pushes a copy to the
  // nearest.
  auto truth = testing::true_nearest(net, key, 5);
  std::vector<size_t> kill;
  for (size_t i : net.alive_nodes()) {
    for (size_t r = 0; r < 4; ++r) {
      if (net.node(i).self().id == truth[r] && i != 20) kill.push_back(i);
    }
  }
  for (size_t i : kill)
    net.kill(i);
  auto got = net.get(20, {key}, GetOptions{.latest = true});
  ASSERT_TRUE(got.records[0].has_value());
  net.run_for(std::chrono::seconds(1));
  EXPECT_GE(net.node(20).stats().cache_pushes, 1u);
  size_t cached = 0;
  for (size_t i : net.alive_nodes())
    cached += i != 20 && net.node(i).cache().contains(key, net.dht_now());
  EXPECT_GE(cached, 1u);
}

TEST_F(SmallNetwork, IdleBucketsAreRefreshed) {
  uint64_t before = net.node(7).stats().refreshes;
  net.run_for(std::chrono::minutes(11));
  EXPECT_GT(net.node(7).stats().refreshes, before);
}

TEST_F(SmallNetwork, PartitionHidesAndHealingRestores) {
  for (size_t i = 0; i < 20; ++i)
    net.set_partition(i, 1);
  NodeId key = NodeId::from_key("split");
  auto stored = net.store(30, {{key, std::nullopt, "x", net.dht_now() + 60'000, false}},
                          std::chrono::seconds(20));
  auto seen_across = net.get(5, {key}, GetOptions{.latest = true}, std::chrono::seconds(20));
  net.heal_partitions();
  net.run_for(std::chrono::minutes(6));  // bans expire, tables heal
  ASSERT_TRUE(
      net.store(30, {{key, std::nullopt, "y", net.dht_now() + 60'000, false}}).items[0].ok());
  auto healed = net.get(5, {key}, GetOptions{.latest = true});
  ASSERT_TRUE(healed.records[0].has_value());
  EXPECT_EQ(healed.records[0]->regular->value, "y");
  // During the split only the store side could hold it.
  EXPECT_TRUE(stored.items[0].ok());
  EXPECT_FALSE(seen_across.records[0].has_value());
}

TEST(SimDeterminism, SameSeedSameRun) {
  auto run = [] {
    SimNetwork net(SimOptions{.seed = 99, .loss = 0.02});
    std::mt19937_64 rng(99);
    testing::grow_network(net, 60, testing::sim_node_options(), rng);
    for (int i = 0; i < 20; ++i) {
      net.store(static_cast<size_t>(i), {{NodeId::from_key(std::to_string(i)), std::nullopt, "v",
                                          net.dht_now() + 60'000, false}});
    }
    return std::make_tuple(net.stats().messages, net.stats().bytes, net.stats().dropped, net.now());
  };
  EXPECT_EQ(run(), run());
}

}  // namespace
}  // namespace hivemind::dht
