// The matchmaking messages: round trips, every limit refused at limit + 1, every truncation and
// trailing byte refused, and the group's own consistency rules.
#include <gtest/gtest.h>

#include <hivemind/averaging/group_wire.h>
#include <hivemind/averaging/matchmaker.h>

namespace hivemind::averaging {
namespace {

MemberInfo member(std::string endpoint, std::vector<std::string> backends = {"transport"},
                  std::string device = "") {
  return MemberInfo{std::move(endpoint), std::move(backends), std::move(device)};
}

Group sample_group() {
  Group group;
  group.key = "run42.dense";
  group.round = 7;
  group.members = {member("tcp://10.0.0.1:4000", {"nccl", "transport"}, "GPU-a"),
                   member("tcp://10.0.0.2:4000", {"transport", "nccl"}, "GPU-b"),
                   member("tcp://10.0.0.3:4000")};
  group.self = 2;
  group.backend = "transport";
  group.backend_setup = {1, 2, 3};
  return group;
}

JoinRequest sample_join() {
  return JoinRequest{"run42.dense",
                     member("tcp://10.0.0.2:4000", {"nccl", "transport"}, "GPU-b"),
                     {{quant::DType::kFloat32, 1000}, {quant::DType::kBFloat16, 1}},
                     41,
                     Milliseconds(2500)};
}

TEST(GroupWire, MemberInfoRoundTrips) {
  MemberInfo original = member("tcp://10.0.0.2:4000", {"nccl", "transport"}, "GPU-b");
  auto decoded = decode_member_info(encode_member_info(original));
  ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
  EXPECT_EQ(*decoded, original);
}

TEST(GroupWire, JoinRequestRoundTrips) {
  JoinRequest original = sample_join();
  auto decoded = decode_join_request(encode_join_request(original));
  ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
  EXPECT_EQ(decoded->key, original.key);
  EXPECT_EQ(decoded->member, original.member);
  EXPECT_EQ(decoded->tensors, original.tensors);
  EXPECT_EQ(decoded->last_round, 41u);
  EXPECT_EQ(decoded->wait, original.wait);
}

TEST(GroupWire, GroupRoundTripsAsGroupAndAsJoinReply) {
  Group original = sample_group();
  auto bytes = encode_group(original);
  auto decoded = decode_group(bytes);
  ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
  EXPECT_EQ(decoded->key, original.key);
  EXPECT_EQ(decoded->round, original.round);
  EXPECT_EQ(decoded->members, original.members);
  EXPECT_EQ(decoded->self, original.self);
  EXPECT_EQ(decoded->backend, original.backend);
  EXPECT_EQ(decoded->backend_setup, original.backend_setup);
  auto reply = decode_join_reply(bytes);
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_TRUE(std::holds_alternative<Group>(*reply));
  EXPECT_EQ(std::get<Group>(*reply).members, original.members);
}

TEST(GroupWire, RefusalRoundTripsAsJoinReply) {
  JoinRefusal refusal{JoinRefusal::Reason::kLate, "joined late: round 3"};
  auto reply = decode_join_reply(encode_join_refusal(refusal));
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  ASSERT_TRUE(std::holds_alternative<JoinRefusal>(*reply));
  EXPECT_EQ(std::get<JoinRefusal>(*reply).reason, JoinRefusal::Reason::kLate);
  EXPECT_EQ(std::get<JoinRefusal>(*reply).message, refusal.message);
  // A refusal is not a group, and a join request is neither.
  EXPECT_FALSE(decode_group(encode_join_refusal(refusal)).is_ok());
  EXPECT_FALSE(decode_join_reply(encode_join_request(sample_join())).is_ok());
}

TEST(GroupWire, EveryTruncationAndTrailingByteIsRefused) {
  for (const auto& bytes : {encode_group(sample_group()), encode_join_request(sample_join()),
                            encode_member_info(sample_join().member)}) {
    for (size_t n = 0; n < bytes.size(); ++n) {
      std::span<const uint8_t> prefix(bytes.data(), n);
      EXPECT_FALSE(decode_group(prefix).is_ok()) << n;
      EXPECT_FALSE(decode_join_request(prefix).is_ok()) << n;
      EXPECT_FALSE(decode_member_info(prefix).is_ok()) << n;
      EXPECT_FALSE(decode_join_reply(prefix).is_ok()) << n;
    }
    auto longer = bytes;
    longer.push_back(0);
    EXPECT_FALSE(decode_group(longer).is_ok());
    EXPECT_FALSE(decode_join_request(longer).is_ok());
    EXPECT_FALSE(decode_member_info(longer).is_ok());
  }
}

TEST(GroupWire, HeaderIsChecked) {
  auto bytes = encode_group(sample_group());
  auto bad_magic = bytes;
  bad_magic[0] = 'X';
  EXPECT_NE(decode_group(bad_magic).status().message().find("bad magic"), std::string::npos);
  auto bad_version = bytes;
  bad_version[2] = 2;
  EXPECT_NE(decode_group(bad_version).status().message().find("unsupported version 2"),
            std::string::npos);
}

TEST(GroupWire, LimitsAreEnforcedAtLimitPlusOne) {
  GroupWireLimits limits;
  limits.max_key_bytes = 11;  // "run42.dense"
  limits.max_endpoint_bytes = 19;
  limits.max_backends = 2;
  limits.max_backend_name_bytes = 9;
  limits.max_device_id_bytes = 5;
  limits.max_members = 3;
  limits.max_tensors = 2;
  limits.max_setup_bytes = 3;
  EXPECT_TRUE(decode_group(encode_group(sample_group()), limits).is_ok());
  EXPECT_TRUE(decode_join_request(encode_join_request(sample_join()), limits).is_ok());

  auto refused = [&](const Group& group, std::string_view what) {
    auto decoded = decode_group(encode_group(group), limits);
    ASSERT_FALSE(decoded.is_ok()) << what;
    EXPECT_EQ(decoded.status().code(), StatusCode::kProtocol);
    EXPECT_NE(decoded.status().message().find(what), std::string::npos)
        << decoded.status().message();
  };
  Group g = sample_group();
  g.key += "x";
  refused(g, "key of 12 bytes exceeds the limit of 11");
  g = sample_group();
  g.members[2].endpoint = "tcp://10.0.0.30:4000";
  refused(g, "endpoint of 20 bytes");
  g = sample_group();
  g.members[1].backends.push_back("other");
  refused(g, "3 backends exceed the limit of 2");
  g = sample_group();
  g.members[0].backends[0] = "transport2";
  refused(g, "backend name of 10 bytes");
  g = sample_group();
  g.members[0].device_id = "GPU-aa";
  refused(g, "device id of 6 bytes");
  g = sample_group();
  g.members.push_back(member("tcp://10.0.0.4:4000"));
  refused(g, "4 members exceed the limit of 3");
  g = sample_group();
  g.backend_setup.push_back(4);
  refused(g, "backend setup of 4 bytes");

  JoinRequest join = sample_join();
  join.tensors.push_back({quant::DType::kFloat16, 3});
  auto decoded = decode_join_request(encode_join_request(join), limits);
  ASSERT_FALSE(decoded.is_ok());
  EXPECT_NE(decoded.status().message().find("3 tensors exceed the limit of 2"), std::string::npos);
}

TEST(GroupWire, CountsLargerThanTheMessageAreRefusedBeforeAllocating) {
  // A group claiming a million members in a few bytes: refused by the bytes left, not the limit.
  GroupWireLimits limits;
  limits.max_members = 1u << 30;
  auto bytes = encode_group(sample_group());
  // header (4) + key (1 + 11) + round (8): the members count follows.
  const size_t at = 4 + 1 + 11 + 8;
  ASSERT_EQ(bytes[at], 3);
  std::vector<uint8_t> hostile(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(at));
  for (uint8_t b : {0x80, 0x80, 0x40})  // varint 2^20
    hostile.push_back(b);
  auto decoded = decode_group(hostile, limits);
  ASSERT_FALSE(decoded.is_ok());
  EXPECT_NE(decoded.status().message().find("do not fit"), std::string::npos)
      << decoded.status().message();
}

TEST(GroupWire, GroupConsistencyIsChecked) {
  Group g = sample_group();
  g.members[1].endpoint = g.members[0].endpoint;
  EXPECT_NE(decode_group(encode_group(g)).status().message().find("listed twice"),
            std::string::npos);
  g = sample_group();
  g.self = 3;
  EXPECT_NE(decode_group(encode_group(g)).status().message().find("self index 3 outside"),
            std::string::npos);
  g = sample_group();
  g.backend = "nccl";  // member 3 cannot run it
  EXPECT_NE(decode_group(encode_group(g)).status().message().find("not one member"),
            std::string::npos);
  g = sample_group();
  g.members.clear();
  g.self = 0;
  EXPECT_NE(decode_group(encode_group(g)).status().message().find("no members"), std::string::npos);
}

TEST(GroupWire, JoinRequestRefusesIntegerAndEmptyTensors) {
  JoinRequest join = sample_join();
  join.tensors[1].dtype = quant::DType::kInt32;
  EXPECT_NE(
      decode_join_request(encode_join_request(join)).status().message().find("not a floating type"),
      std::string::npos);
  join = sample_join();
  join.tensors[0].elements = 0;
  EXPECT_NE(
      decode_join_request(encode_join_request(join)).status().message().find("tensor 0 is empty"),
      std::string::npos);
}

TEST(GroupWire, ShapeMismatchNamesTheTensor) {
  std::vector<TensorShape> leader = {{quant::DType::kFloat32, 10}, {quant::DType::kFloat32, 12}};
  EXPECT_EQ(describe_shape_mismatch(leader, leader), "");
  auto other = leader;
  other[1].elements = 10;
  EXPECT_EQ(describe_shape_mismatch(other, leader),
            "tensor 1 has 10 float32 elements here but 12 float32 at the leader");
  other = leader;
  other[0].dtype = quant::DType::kFloat16;
  EXPECT_NE(describe_shape_mismatch(other, leader).find("10 float16 elements here"),
            std::string::npos);
  other.pop_back();
  EXPECT_EQ(describe_shape_mismatch(other, leader),
            "this member averages 1 tensors but the leader averages 2");
}

TEST(ChooseBackend, FirstOfTheLeadersListThatEveryMemberRuns) {
  std::vector<MemberInfo> members = {member("a", {"nccl", "transport"}, "GPU-a"),
                                     member("b", {"nccl", "transport"}, "GPU-b")};
  EXPECT_EQ(*choose_backend(members), "nccl");
  members.push_back(member("c", {"transport"}));
  EXPECT_EQ(*choose_backend(members), "transport");
  // NCCL needs one distinct device per member.
  members = {member("a", {"nccl", "transport"}, "GPU-a"),
             member("b", {"nccl", "transport"}, "GPU-a")};
  EXPECT_EQ(*choose_backend(members), "transport");
  members = {member("a", {"nccl"}, "GPU-a"), member("b", {"transport"})};
  auto none = choose_backend(members);
  ASSERT_FALSE(none.is_ok());
  EXPECT_NE(none.status().message().find("no backend every one of the 2 members"),
            std::string::npos);
}

}  // namespace
}  // namespace hivemind::averaging
