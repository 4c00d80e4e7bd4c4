// The expert registry on a small simulated network.
#include <gtest/gtest.h>

#include <hivemind/dht/dht.h>
#include <hivemind/dht/expert_registry.h>
#include <hivemind/dht/sim_network.h>

#include "sim_helpers.h"

namespace hivemind::dht {
namespace {

TEST(ExpertUid, Grammar) {
  for (const char* ok :
       {"ffn.0", "ffn.3.14", "ffn_expert.98.76.54", "a.1.2.3.4.5", "x-y.123456789"}) {
    EXPECT_TRUE(is_valid_uid(ok)) << ok;
  }
  for (const char* bad :
       {"", "ffn", "ffn.", ".1", "ffn.01", "ffn.-1", "ffn.1.", "ffn..1", "ffn.1a", "ffn.1234567890",
        "ffn. 1", "ffn.[0:2]", "a/b.0", "a\\b.0", "a\"b.0", "a b.0", "\x01a.0"}) {
    EXPECT_FALSE(is_valid_uid(bad)) << bad;
  }
  const std::string longest = std::string(kMaxUidBytes - 2, 'e') + ".0";
  EXPECT_TRUE(is_valid_uid(longest));
  EXPECT_FALSE(is_valid_uid("e" + longest));  // limit + 1
  EXPECT_EQ(parse_uid_coordinate("14"), 14);
  EXPECT_EQ(parse_uid_coordinate("0"), 0);
  EXPECT_EQ(parse_uid_coordinate("999999999"), 999999999);
  for (const char* bad : {"", "014", "-1", "1a", "+1", "1234567890"})
    EXPECT_FALSE(parse_uid_coordinate(bad).has_value()) << bad;
  for (const char* ok : {"ffn.", "ffn.3.", "ffn.3.14."})
    EXPECT_TRUE(is_valid_prefix(ok)) << ok;
  for (const char* bad : {"ffn", "ffn.3", ".", "ffn..", "ffn.03."})
    EXPECT_FALSE(is_valid_prefix(bad)) << bad;
  EXPECT_EQ(split_uid("ffn.3.14").value(), std::make_pair(std::string("ffn.3."), 14));
  EXPECT_EQ(split_uid("ffn.3.").value(), std::make_pair(std::string("ffn."), 3));
  EXPECT_FALSE(split_uid("ffn.").is_ok());
  EXPECT_FALSE(split_uid("nonsense").is_ok());
}

TEST(ExpertUid, AddressEncoding) {
  ExpertAddress address{"ffn.3.14", "tcp://10.0.0.5:4000"};
  EXPECT_EQ(decode_expert_address(encode_expert_address(address)), address);
  std::string bytes = encode_expert_address(address);
  EXPECT_FALSE(decode_expert_address(bytes.substr(0, bytes.size() - 1)).has_value());
  EXPECT_FALSE(decode_expert_address(bytes + "x").has_value());
  EXPECT_FALSE(decode_expert_address("").has_value());
  EXPECT_FALSE(decode_expert_address(encode_expert_address({"not a uid", "tcp://10.0.0.5:4000"}))
                   .has_value());
  EXPECT_FALSE(decode_expert_address(encode_expert_address({"ffn.1", "nowhere"})).has_value());
}

class Registry : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng(21);
    ASSERT_TRUE(testing::grow_network(net, 30, testing::sim_node_options(), rng));
    for (size_t i = 0; i < 30; ++i)
      dhts.push_back(Dht::attach(net, i));
  }
  Deadline soon() { return Deadline::after(std::chrono::seconds(20), net.clock()); }
  DhtTime in(int seconds) { return net.dht_now() + seconds * 1000; }

  SimNetwork net{SimOptions{.seed = 21}};
  std::vector<std::unique_ptr<Dht>> dhts;
};

TEST_F(Registry, DeclareThenGet) {
  Dht& server = *dhts[3];
  std::vector<std::string> uids = {"ffn.3.14", "ffn.3.15", "ffn.4.1"};
  ASSERT_TRUE(declare_experts(server, uids, server.address(), in(60), soon()).is_ok());
  std::vector<std::string> wanted = {"ffn.3.14", "ffn.9.9", "ffn.4.1"};
  auto experts = get_experts(*dhts[20], wanted, soon());
  ASSERT_TRUE(experts.is_ok()) << experts.status().to_string();
  ASSERT_EQ(experts->size(), 3u);
  EXPECT_EQ((*experts)[0], (ExpertAddress{"ffn.3.14", server.address()}));
  EXPECT_FALSE((*experts)[1].has_value());
  EXPECT_EQ((*experts)[2], (ExpertAddress{"ffn.4.1", server.address()}));
  std::vector<std::string> bad = {"ffn"};
  EXPECT_EQ(get_experts(*dhts[20], bad, soon()).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(Registry, EveryPrefixListsItsSuccessors) {
  std::vector<std::string> a = {"ffn.3.14", "ffn.3.15"}, b = {"ffn.4.1"};
  ASSERT_TRUE(declare_experts(*dhts[1], a, dhts[1]->address(), in(60), soon()).is_ok());
  ASSERT_TRUE(declare_experts(*dhts[2], b, dhts[2]->address(), in(60), soon()).is_ok());
  std::vector<std::string> prefixes = {"ffn.", "ffn.3.", "ffn.4.", "ffn.5."};
  auto successors = get_active_successors(*dhts[25], prefixes, soon());
  ASSERT_TRUE(successors.is_ok());
  const auto& s = *successors;
  EXPECT_EQ(s[0].size(), 2u);
  EXPECT_EQ(s[0].count(3), 1u);
  EXPECT_EQ(s[0].at(4), (ExpertAddress{"ffn.4.1", dhts[2]->address()}));
  EXPECT_EQ(s[1].size(), 2u);
  EXPECT_EQ(s[1].at(14), (ExpertAddress{"ffn.3.14", dhts[1]->address()}));
  EXPECT_EQ(s[2].size(), 1u);
  EXPECT_TRUE(s[3].empty());
  auto active = find_active_prefixes(*dhts[26], prefixes, soon());
  EXPECT_EQ(*active, (std::vector<bool>{true, true, true, false}));
}

TEST_F(Registry, FlatExpertsAppearUnderTheirOwnPrefix) {
  std::vector<std::string> uids = {"ffn.5", "ffn.6"};
  ASSERT_TRUE(declare_experts(*dhts[4], uids, dhts[4]->address(), in(60), soon()).is_ok());
  std::vector<std::string> prefixes = {"ffn.", "ffn.5.", "ffn.7."};
  auto s = get_active_successors(*dhts[9], prefixes, soon()).value();
  EXPECT_EQ(s[0].size(), 2u);
  ASSERT_EQ(s[1].size(), 1u);
  EXPECT_EQ(s[1].at(kFlatExpert), (ExpertAddress{"ffn.5", dhts[4]->address()}));
  EXPECT_TRUE(s[2].empty());
  std::vector<std::string> flat_prefix = {"ffn.6."};
  EXPECT_EQ(find_active_prefixes(*dhts[9], flat_prefix, soon()).value(), std::vector<bool>{true});
}

TEST_F(Registry, AServerMayOnlyDeclareItself) {
  std::vector<std::string> uids = {"ffn.1.1"};
  Status status = declare_experts(*dhts[5], uids, dhts[6]->address(), in(60), soon());
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("may only declare itself"), std::string::npos);
  dhts[5]->add_own_endpoint("tcp://10.1.2.3:4000");  // e.g. its expert server's separate port
  EXPECT_TRUE(declare_experts(*dhts[5], uids, "tcp://10.1.2.3:4000", in(60), soon()).is_ok());
  std::vector<std::string> bad = {"ffn.01"};
  EXPECT_EQ(declare_experts(*dhts[5], bad, dhts[5]->address(), in(60), soon()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(declare_experts(*dhts[5], uids, dhts[5]->address(), net.dht_now(), soon()).code(),
            StatusCode::kInvalidArgument);
}

TEST_F(Registry, JunkEntriesUnderAPrefixAreIgnored) {
  std::vector<std::string> uids = {"ffn.3.14"};
  ASSERT_TRUE(declare_experts(*dhts[1], uids, dhts[1]->address(), in(60), soon()).is_ok());
  // A misbehaving node writes straight into the prefix dictionary.
  std::vector<DhtStoreItem> junk = {
      {"ffn.3.", "7", encode_expert_address({"ffn.9.9", dhts[8]->address()}),
       in(60)},  // not under ffn.3.7
      {"ffn.3.", "x", encode_expert_address({"ffn.3.1", dhts[8]->address()}),
       in(60)},  // not a coordinate
      {"ffn.3.", "8", "garbage", in(60)},
      {"ffn.3.", "99", encode_expert_address({"ffn.3.99", dhts[8]->address()}),
       in(60)},  // outside a 64 grid
  };
  ASSERT_TRUE(dhts[8]->store(junk, soon()).is_ok());
  std::vector<std::string> prefixes = {"ffn.3."};
  auto s =
      get_active_successors(*dhts[12], prefixes, soon(), SuccessorOptions{.grid_size = 64}).value();
  ASSERT_EQ(s[0].size(), 1u);
  EXPECT_EQ(s[0].count(14), 1u);
}

TEST_F(Registry, NegativeCacheHasItsOwnNamespace) {
  // hivemind wrote "None" at subkey -1 of the real prefix for 300 s, exactly where a 1-D expert's
  // declaration goes, shadowing it (DHT bug 5, docs/hivemind-reference.md). Here the negative entry
  // is local and keyed apart.
  Dht& client = *dhts[10];
  std::vector<std::string> prefixes = {"ffn.8."};
  auto before = get_active_successors(client, prefixes, soon()).value();
  EXPECT_TRUE(before[0].empty());
  std::vector<std::string> key = {"ffn.8."};
  auto raw = client.get(key, soon(), GetOptions{.latest = true}).value();
  EXPECT_FALSE(raw[0].has_value());  // nothing was written into the DHT under the real key

  uint64_t sent = client.stats().requests_sent;
  EXPECT_TRUE(get_active_successors(client, prefixes, soon()).value()[0].empty());
  EXPECT_EQ(client.stats().requests_sent, sent);  // answered from the negative cache

  std::vector<std::string> uids = {"ffn.8"};
  ASSERT_TRUE(declare_experts(*dhts[11], uids, dhts[11]->address(), in(120), soon()).is_ok());
  // Another node (no negative entry) sees it at once; the client after its negative TTL.
  EXPECT_EQ(get_active_successors(*dhts[12], prefixes, soon()).value()[0].size(), 1u);
  net.run_for(std::chrono::seconds(31));
  auto after = get_active_successors(client, prefixes, soon()).value();
  ASSERT_EQ(after[0].size(), 1u);
  EXPECT_EQ(after[0].at(kFlatExpert).uid, "ffn.8");
  // Without negative caching nothing is remembered.
  std::vector<std::string> other = {"ffn.9."};
  SuccessorOptions off{.negative_caching = false};
  get_active_successors(client, other, soon(), off).value();
  sent = client.stats().requests_sent;
  get_active_successors(client, other, soon(), off).value();
  EXPECT_GT(client.stats().requests_sent, sent);
}

TEST_F(Registry, ExpertsVanishAfterTheirExpiration) {
  std::vector<std::string> uids = {"ffn.2.2"};
  ASSERT_TRUE(declare_experts(*dhts[7], uids, dhts[7]->address(), in(10), soon()).is_ok());
  EXPECT_TRUE(get_experts(*dhts[17], uids, soon()).value()[0].has_value());
  net.run_for(std::chrono::seconds(11));
  EXPECT_FALSE(get_experts(*dhts[18], uids, soon()).value()[0].has_value());
  std::vector<std::string> prefixes = {"ffn.2."};
  EXPECT_TRUE(get_active_successors(*dhts[19], prefixes, soon(),
                                    SuccessorOptions{.negative_caching = false})
                  .value()[0]
                  .empty());
}

TEST_F(Registry, DhtFacadeChecksKeysAndReportsPeers) {
  std::vector<std::string> long_key = {std::string(kMaxKeyBytes + 1, 'k')};
  EXPECT_EQ(dhts[0]->get(long_key, soon()).status().code(), StatusCode::kTooLarge);
  std::vector<std::string> ok_key = {std::string(kMaxKeyBytes, 'k')};
  EXPECT_TRUE(dhts[0]->get(ok_key, soon()).is_ok());
  EXPECT_GT(dhts[0]->peers().size(), 0u);
  auto pinged = dhts[0]->ping(dhts[1]->address(), soon());
  ASSERT_TRUE(pinged.is_ok());
  EXPECT_EQ(pinged->id, dhts[1]->node_id());
  EXPECT_FALSE(dhts[0]->ping("tcp://10.99.99.99:1", soon()).is_ok());
}

}  // namespace
}  // namespace hivemind::dht
