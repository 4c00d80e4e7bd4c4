// The part message codec: round trips, every validation rule, and the partition it checks against.
#include <gtest/gtest.h>

#include <hivemind/averaging/part_message.h>
#include <hivemind/common/byte_order.h>

namespace hivemind::averaging {
namespace {

PartHeader valid_header() {
  PartHeader h;
  h.kind = PartKind::kContribution;
  h.key_hash = key_fingerprint("run42.dense");
  h.group_hash = 0x1234;
  h.round = 7;
  h.members = 3;
  h.sender = 2;
  h.part = 1;
  h.total_elements = 1000;  // parts [0,333) [333,666) [666,1000)
  h.chunk_elements = 100;
  h.offset = 633;  // the last chunk of part 1: 33 elements
  h.count = 33;
  h.segments = {{quant::DType::kFloat32, 30}, {quant::DType::kBFloat16, 3}};
  return h;
}

std::string decode_error(const std::vector<uint8_t>& bytes, const PartLimits& limits = {}) {
  auto decoded = decode_part_header(bytes, limits);
  EXPECT_FALSE(decoded.is_ok());
  return decoded.is_ok() ? "" : decoded.status().message();
}

TEST(PartRange, SplitsEvenlyAndContiguously) {
  for (uint64_t total : {1ull, 2ull, 3ull, 7ull, 1000ull, 1000003ull, (1ull << 40) + 5}) {
    for (uint32_t n : {1u, 2u, 3u, 5u, 7u, 64u}) {
      uint64_t expected_begin = 0, smallest = UINT64_MAX, largest = 0;
      for (uint32_t j = 0; j < n; ++j) {
        const ElementRange r = part_range(total, n, j);
        EXPECT_EQ(r.begin, expected_begin) << total << " " << n << " " << j;
        expected_begin = r.end;
        smallest = std::min(smallest, r.size());
        largest = std::max(largest, r.size());
      }
      EXPECT_EQ(expected_begin, total);
      EXPECT_LE(largest - smallest, 1u) << total << " over " << n;
    }
  }
}

TEST(PartMessage, RoundTripsBothKindsAndCodecs) {
  PartHeader h = valid_header();
  auto bytes = encode_part_header(h);
  EXPECT_EQ(bytes.size(), kPartFixedBytes + 2 * kPartSegmentBytes);
  auto decoded = decode_part_header(bytes, {});
  ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
  EXPECT_EQ(*decoded, h);

  h.kind = PartKind::kMean;
  h.codec = quant::Scheme::kBlockAbsmaxU8;
  h.block_size = 256;
  decoded = decode_part_header(encode_part_header(h), {});
  ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
  EXPECT_EQ(*decoded, h);
}

TEST(PartMessage, PayloadSizesFollowTheCodec) {
  PartHeader h = valid_header();
  auto raw = part_payload_sizes(h);
  ASSERT_TRUE(raw.is_ok());
  EXPECT_EQ(*raw, (std::vector<uint64_t>{120, 6}));
  h.codec = quant::Scheme::kBlockAbsmaxU8;
  h.block_size = 64;
  auto packed = part_payload_sizes(h);
  ASSERT_TRUE(packed.is_ok());
  ASSERT_EQ(packed->size(), 2u);
  EXPECT_GT((*packed)[0], 30u);  // header + one scale + 30 codes
  EXPECT_LT((*packed)[0], 120u);
}

TEST(PartMessage, RefusesEveryMalformedField) {
  const auto good = encode_part_header(valid_header());
  auto with = [&](size_t at, auto value) {
    auto bytes = good;
    store_le(bytes.data() + at, value);
    return bytes;
  };
  EXPECT_NE(decode_error({good.begin(), good.begin() + 40}).find("shorter"), std::string::npos);
  EXPECT_NE(decode_error(with(0, uint32_t{0})).find("magic"), std::string::npos);
  EXPECT_NE(decode_error(with(4, uint8_t{2})).find("version"), std::string::npos);
  EXPECT_NE(decode_error(with(5, uint8_t{3})).find("kind"), std::string::npos);
  EXPECT_NE(decode_error(with(6, uint8_t{4})).find("codec"), std::string::npos);
  EXPECT_NE(decode_error(with(7, uint8_t{6})).find("block_log2"), std::string::npos);
  {
    auto bytes = with(6, uint8_t{3});  // block_absmax_u8 needs block_log2 in [6, 12]
    bytes[7] = 13;
    EXPECT_NE(decode_error(bytes).find("block_log2"), std::string::npos);
  }
  EXPECT_NE(decode_error(with(32, uint32_t{0})).find("members"), std::string::npos);
  EXPECT_NE(decode_error(with(32, uint32_t{1025})).find("members"), std::string::npos);
  EXPECT_NE(decode_error(with(36, uint32_t{3})).find("out of range"), std::string::npos);
  EXPECT_NE(decode_error(with(40, uint32_t{3})).find("out of range"), std::string::npos);
  EXPECT_NE(decode_error(with(44, uint32_t{0})).find("segments"), std::string::npos);
  EXPECT_NE(decode_error(with(44, uint32_t{1025})).find("segments"), std::string::npos);
  EXPECT_NE(decode_error(with(44, uint32_t{3})).find("bytes"), std::string::npos);
  EXPECT_NE(decode_error(with(48, uint64_t{0})).find("total"), std::string::npos);
  EXPECT_NE(decode_error(with(48, uint64_t{1} << 37)).find("total"), std::string::npos);
  EXPECT_NE(decode_error(with(56, uint64_t{0})).find("chunk length"), std::string::npos);
  EXPECT_NE(decode_error(with(56, uint64_t{1} << 27)).find("chunk length"), std::string::npos);
  EXPECT_NE(decode_error(with(64, uint64_t{634})).find("chunk boundary"), std::string::npos);
  EXPECT_NE(decode_error(with(64, uint64_t{733})).find("chunk boundary"), std::string::npos);
  EXPECT_NE(decode_error(with(72, uint64_t{34})).find("partition"), std::string::npos);
  EXPECT_NE(decode_error(with(80, uint64_t{1})).find("reserved"), std::string::npos);
  EXPECT_NE(decode_error(with(88, uint8_t{3})).find("floating"), std::string::npos);
  EXPECT_NE(decode_error(with(89, uint64_t{0})).find("segment 0"), std::string::npos);
  EXPECT_NE(decode_error(with(89, uint64_t{34})).find("do not fit"), std::string::npos);
  EXPECT_NE(decode_error(with(89, uint64_t{29})).find("segments hold"), std::string::npos);
  auto longer = good;
  longer.push_back(0);
  EXPECT_NE(decode_error(longer).find("bytes"), std::string::npos);
}

TEST(PartMessage, LimitsAreOptions) {
  const auto bytes = encode_part_header(valid_header());
  PartLimits small;
  small.max_segments = 1;
  EXPECT_NE(decode_error(bytes, small).find("limit 1"), std::string::npos);
  small = {};
  small.max_members = 2;
  EXPECT_NE(decode_error(bytes, small).find("limit 2"), std::string::npos);
  small = {};
  small.max_total_elements = 999;
  EXPECT_NE(decode_error(bytes, small).find("limit 999"), std::string::npos);
  small = {};
  small.max_chunk_elements = 99;
  EXPECT_NE(decode_error(bytes, small).find("limit 99"), std::string::npos);
}

TEST(GroupFingerprint, DependsOnKeyRoundAndMembersInOrder) {
  Group g;
  g.key = "k";
  g.round = 1;
  g.members = {{"tcp://a:1", {"transport"}, ""}, {"tcp://b:2", {"transport"}, ""}};
  const uint64_t base = group_fingerprint(g);
  Group other = g;
  other.round = 2;
  EXPECT_NE(group_fingerprint(other), base);
  other = g;
  std::swap(other.members[0], other.members[1]);
  EXPECT_NE(group_fingerprint(other), base);
  other = g;
  other.key = "k2";
  EXPECT_NE(group_fingerprint(other), base);
  other = g;
  other.self = 1;  // who computes it does not matter
  EXPECT_EQ(group_fingerprint(other), base);
}

}  // namespace
}  // namespace hivemind::averaging
