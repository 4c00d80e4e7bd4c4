#include <gtest/gtest.h>

#include <hivemind/dht/node_id.h>

namespace hivemind::dht {
namespace {

TEST(NodeId, FromKeyIsSha1) {
  // FIPS 180 test vector.
  EXPECT_EQ(NodeId::from_key("abc").hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(NodeId::from_key("").hex(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_NE(NodeId::from_key("ffn.3."), NodeId::from_key("ffn.3"));
}

TEST(NodeId, HexAndBytesRoundTrip) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 100; ++i) {
    NodeId id = NodeId::random(rng);
    EXPECT_EQ(NodeId::from_hex(id.hex()), id);
    EXPECT_EQ(NodeId::from_bytes(id.span()), id);
  }
  EXPECT_FALSE(NodeId::from_hex("abc").has_value());
  EXPECT_FALSE(NodeId::from_hex(std::string(40, 'g')).has_value());
  std::vector<uint8_t> short_bytes(19), long_bytes(21);
  EXPECT_FALSE(NodeId::from_bytes(short_bytes).has_value());
  EXPECT_FALSE(NodeId::from_bytes(long_bytes).has_value());
}

TEST(NodeId, OrderIsNumericBigEndian) {
  NodeId::Bytes a{}, b{};
  a[19] = 1;  // tiny
  b[0] = 1;   // huge
  EXPECT_LT(NodeId(a), NodeId(b));
  NodeId::Bytes c{};
  c[16] = 1;  // the last (4-byte) word is compared too
  EXPECT_LT(NodeId(a), NodeId(c));
  EXPECT_EQ(NodeId(a), NodeId(a));
  EXPECT_NE(NodeId(a), NodeId(c));
}

TEST(NodeId, DistanceAndPrefix) {
  std::mt19937_64 rng(2);
  for (int i = 0; i < 200; ++i) {
    NodeId a = NodeId::random(rng), b = NodeId::random(rng);
    EXPECT_EQ(a.distance(b), b.distance(a));
    EXPECT_TRUE(a.distance(a).is_zero());
    int cpl = a.common_prefix_length(b);
    for (int bit = 0; bit < cpl; ++bit)
      EXPECT_EQ(a.bit(bit), b.bit(bit));
    if (cpl < NodeId::kBits) {
      EXPECT_NE(a.bit(cpl), b.bit(cpl));
    }
  }
  NodeId x = NodeId::random(rng);
  EXPECT_EQ(x.common_prefix_length(x), NodeId::kBits);
  EXPECT_EQ(x.common_prefix_length(x.with_bit(0, !x.bit(0))), 0);
  EXPECT_EQ(x.common_prefix_length(x.with_bit(159, !x.bit(159))), 159);
}

TEST(NodeId, CloserToMatchesDistanceOrder) {
  std::mt19937_64 rng(3);
  for (int i = 0; i < 1000; ++i) {
    NodeId t = NodeId::random(rng), a = NodeId::random(rng), b = NodeId::random(rng);
    EXPECT_EQ(a.closer_to(t, b), a.distance(t) < b.distance(t));
    EXPECT_FALSE(a.closer_to(t, a));
  }
}

TEST(NodeId, RandomInBucketHasThatPrefixLength) {
  std::mt19937_64 rng(4);
  NodeId own = NodeId::random(rng);
  for (int bucket = 0; bucket < NodeId::kBits; ++bucket) {
    NodeId id = NodeId::random_in_bucket(own, bucket, rng);
    EXPECT_EQ(own.common_prefix_length(id), bucket);
  }
}

}  // namespace
}  // namespace hivemind::dht
