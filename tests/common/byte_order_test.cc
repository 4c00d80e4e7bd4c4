#include <array>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <hivemind/common/byte_order.h>

namespace hivemind {
namespace {

using Bytes = std::vector<uint8_t>;

TEST(ByteOrder, StoresLeastSignificantByteFirst) {
  std::array<uint8_t, 8> b{};
  store_le<uint16_t>(b.data(), 0x0102);
  EXPECT_EQ(b[0], 0x02);
  EXPECT_EQ(b[1], 0x01);
  store_le<uint32_t>(b.data(), 0x31544d48);  // the transport frame magic: "HMT1" on the wire
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), "HMT1");
  store_le<uint64_t>(b.data(), 0x0807060504030201ull);
  EXPECT_EQ(b, (std::array<uint8_t, 8>{1, 2, 3, 4, 5, 6, 7, 8}));
  store_le<int64_t>(b.data(), -2);
  EXPECT_EQ(b, (std::array<uint8_t, 8>{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
}

TEST(ByteOrder, FloatsTravelAsTheirLittleEndianBitPattern) {
  std::array<uint8_t, 8> b{};
  store_le<float>(b.data(), 1.0f);  // 0x3f800000
  EXPECT_EQ(b[0], 0x00);
  EXPECT_EQ(b[1], 0x00);
  EXPECT_EQ(b[2], 0x80);
  EXPECT_EQ(b[3], 0x3f);
  EXPECT_EQ(load_le<float>(b.data()), 1.0f);
  EXPECT_EQ(load_le<uint32_t>(b.data()), 0x3f800000u);
  store_le<double>(b.data(), -0.5);  // 0xbfe0000000000000
  EXPECT_EQ(b[7], 0xbf);
  EXPECT_EQ(b[6], 0xe0);
  EXPECT_EQ(load_le<double>(b.data()), -0.5);
}

TEST(ByteOrder, LoadsAtAnyAlignment) {
  std::array<uint8_t, 16> b{};
  for (size_t at = 0; at < 8; ++at) {
    store_le<uint64_t>(b.data() + at, 0x1122334455667788ull + at);
    EXPECT_EQ(load_le<uint64_t>(b.data() + at), 0x1122334455667788ull + at) << "offset " << at;
    store_le<int32_t>(b.data() + at, std::numeric_limits<int32_t>::min());
    EXPECT_EQ(load_le<int32_t>(b.data() + at), std::numeric_limits<int32_t>::min());
  }
}

TEST(ByteOrder, VarintSizeMatchesTheEncoding) {
  for (uint64_t v : {uint64_t{0}, uint64_t{127}, uint64_t{128}, uint64_t{16383}, uint64_t{16384},
                     std::numeric_limits<uint64_t>::max()}) {
    Bytes out;
    ByteWriter(out).varint(v);
    EXPECT_EQ(out.size(), varint_size(v)) << v;
  }
  EXPECT_EQ(varint_size(std::numeric_limits<uint64_t>::max()), 10u);
}

TEST(ByteWriter, AppendsEveryFieldLittleEndian) {
  Bytes out{0xaa};  // appends after what the caller already holds
  ByteWriter w(out);
  w.u8(1);
  w.u16(0x0302);
  w.u32(0x07060504);
  w.u64(0x0f0e0d0c0b0a0908ull);
  w.i64(-1);
  w.varint(300);  // 0xac 0x02
  w.raw(std::string_view("hi"));
  const std::array<uint8_t, 2> tail{0xfe, 0xef};
  w.raw(std::span<const uint8_t>(tail));
  Bytes expected{0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  expected.insert(expected.end(), 8, 0xff);
  expected.insert(expected.end(), {0xac, 0x02, 'h', 'i', 0xfe, 0xef});
  EXPECT_EQ(out, expected);
}

TEST(ByteReader, ReadsWhatTheWriterWrote) {
  Bytes bytes;
  ByteWriter w(bytes);
  w.u8(7);
  w.u16(0xbeef);
  w.u32(0xdeadbeef);
  w.u64(std::numeric_limits<uint64_t>::max());
  w.i64(std::numeric_limits<int64_t>::min());
  w.varint(std::numeric_limits<uint64_t>::max());
  w.raw(std::string_view("text"));
  w.raw(std::string_view("view"));

  ByteReader r(bytes);
  uint8_t a;
  uint16_t b;
  uint32_t c;
  uint64_t d, v;
  int64_t e;
  std::string s;
  std::span<const uint8_t> view;
  ASSERT_TRUE(r.u8(a) && r.u16(b) && r.u32(c) && r.u64(d) && r.i64(e) && r.varint(v) &&
              r.string(4, s) && r.view(4, view));
  EXPECT_EQ(a, 7);
  EXPECT_EQ(b, 0xbeef);
  EXPECT_EQ(c, 0xdeadbeefu);
  EXPECT_EQ(d, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(e, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(v, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(s, "text");
  EXPECT_EQ(std::string(view.begin(), view.end()), "view");
  EXPECT_EQ(view.data(), bytes.data() + bytes.size() - 4);  // a view, not a copy
  EXPECT_TRUE(r.done());
  EXPECT_EQ(r.offset(), bytes.size());
}

// Every read that does not fit fails and leaves the cursor where it was.
TEST(ByteReader, TruncatedReadsFailWithoutMoving) {
  const Bytes bytes{1, 2, 3};
  ByteReader r(bytes);
  uint8_t one;
  ASSERT_TRUE(r.u8(one));
  uint32_t u32 = 99;
  uint64_t u64 = 99;
  int64_t i64 = 99;
  std::string s = "unchanged";
  std::span<const uint8_t> view;
  EXPECT_FALSE(r.u32(u32));
  EXPECT_FALSE(r.u64(u64));
  EXPECT_FALSE(r.i64(i64));
  EXPECT_FALSE(r.string(3, s));
  EXPECT_FALSE(r.view(3, view));
  EXPECT_EQ(u32, 99u);
  EXPECT_EQ(u64, 99u);
  EXPECT_EQ(i64, 99);
  EXPECT_EQ(s, "unchanged");
  EXPECT_EQ(r.offset(), 1u);
  EXPECT_EQ(r.remaining(), 2u);
  uint16_t u16;
  ASSERT_TRUE(r.u16(u16));
  EXPECT_EQ(u16, 0x0302);
  EXPECT_TRUE(r.done());
  EXPECT_FALSE(r.u8(one));
  EXPECT_TRUE(r.string(0, s));  // an empty read at the end still fits
  EXPECT_EQ(s, "");
}

TEST(ByteReader, EmptyInput) {
  ByteReader r(std::span<const uint8_t>{});
  uint8_t b;
  uint64_t v;
  EXPECT_TRUE(r.done());
  EXPECT_FALSE(r.u8(b));
  EXPECT_FALSE(r.varint(v));
}

TEST(ByteReader, VarintRefusesTruncatedOverlongAndOversizedEncodings) {
  auto read = [](const Bytes& bytes, uint64_t& value) {
    ByteReader r(bytes);
    bool ok = r.varint(value);
    EXPECT_EQ(r.offset(), ok ? bytes.size() : 0u) << "a failed read must not move the cursor";
    return ok;
  };
  uint64_t v = 0;
  EXPECT_TRUE(read({0x00}, v));
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(read({0xac, 0x02}, v));
  EXPECT_EQ(v, 300u);
  EXPECT_FALSE(read({0xac}, v)) << "continuation bit set on the last byte";
  EXPECT_FALSE(read({0x80, 0x00}, v)) << "overlong zero";
  EXPECT_FALSE(read({0xac, 0x82, 0x00}, v)) << "overlong 300";
  Bytes max(9, 0xff);
  max.push_back(0x01);
  EXPECT_TRUE(read(max, v));
  EXPECT_EQ(v, std::numeric_limits<uint64_t>::max());
  max.back() = 0x02;
  EXPECT_FALSE(read(max, v)) << "bit 64 set";
  Bytes eleven(10, 0xff);
  eleven.push_back(0x01);
  EXPECT_FALSE(read(eleven, v)) << "more than 10 bytes";
}

}  // namespace
}  // namespace hivemind
