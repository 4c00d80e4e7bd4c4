// The frame codec: round trips, every validation rule, limit and limit+1.
#include <gtest/gtest.h>

#include <hivemind/transport/frame.h>

namespace hivemind::transport {
namespace {

std::vector<uint8_t> sample(FrameKind kind = FrameKind::kRequest, std::string_view method = "echo",
                            std::vector<uint8_t> meta = {1, 2, 3},
                            std::vector<std::vector<uint8_t>> payloads = {{9, 8}, {}, {7}}) {
  FrameHeader h;
  h.kind = kind;
  h.request_id = 42;
  std::vector<std::span<const uint8_t>> spans;
  for (auto& p : payloads)
    spans.emplace_back(p);
  return encode_frame(h, method, meta, spans);
}

TEST(Frame, RoundTrip) {
  auto bytes = sample();
  auto f = decode_frame(bytes, Limits{});
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ(f->header.kind, FrameKind::kRequest);
  EXPECT_EQ(f->header.request_id, 42u);
  EXPECT_EQ(f->method, "echo");
  EXPECT_EQ(std::vector<uint8_t>(f->metadata.begin(), f->metadata.end()),
            (std::vector<uint8_t>{1, 2, 3}));
  ASSERT_EQ(f->payloads.size(), 3u);
  EXPECT_EQ(f->payloads[0].size(), 2u);
  EXPECT_EQ(f->payloads[1].size(), 0u);
  EXPECT_EQ(f->payloads[2][0], 7);
  EXPECT_EQ(bytes.size(), kFrameHeaderSize + 4 + 3 * kTensorDescriptorSize + 3 + 3);
}

TEST(Frame, MagicAndLayoutAreLittleEndian) {
  auto bytes = sample();
  EXPECT_EQ(bytes[0], 'H');
  EXPECT_EQ(bytes[1], 'M');
  EXPECT_EQ(bytes[2], 'T');
  EXPECT_EQ(bytes[3], '1');
  EXPECT_EQ(bytes[4], kFrameVersion);
  EXPECT_EQ(bytes[8], 42);  // request id, low byte first
}

Status decode_status(const std::vector<uint8_t>& bytes, const Limits& limits = {}) {
  return decode_frame(bytes, limits).status();
}

TEST(Frame, RejectsBadMagicVersionKindFlagsReserved) {
  auto base = sample();
  auto b = base;
  b[0] ^= 1;
  EXPECT_EQ(decode_status(b).code(), StatusCode::kProtocol);
  b = base;
  b[4] = 2;
  EXPECT_EQ(decode_status(b).code(), StatusCode::kProtocol);
  b = base;
  b[5] = 9;
  EXPECT_EQ(decode_status(b).code(), StatusCode::kProtocol);
  b = base;
  b[7] = 0x80;
  EXPECT_EQ(decode_status(b).code(), StatusCode::kProtocol);
  b = base;
  b[6] = kFrameFlagSplitMetadata;  // only meaningful inside UCX active-message headers
  EXPECT_EQ(decode_status(b).code(), StatusCode::kProtocol);
  b = base;
  b[29] = 1;
  EXPECT_EQ(decode_status(b).code(), StatusCode::kProtocol);
}

TEST(Frame, TruncationAtEveryLengthIsAnError) {
  auto base = sample();
  for (size_t n = 0; n < base.size(); ++n) {
    std::vector<uint8_t> cut(base.begin(), base.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_FALSE(decode_frame(cut, Limits{}).is_ok()) << "length " << n;
  }
  auto longer = base;
  longer.push_back(0);
  EXPECT_EQ(decode_status(longer).code(), StatusCode::kProtocol);
}

TEST(Frame, KindRules) {
  EXPECT_EQ(decode_status(sample(FrameKind::kRequest, "")).code(), StatusCode::kProtocol);
  EXPECT_EQ(decode_status(sample(FrameKind::kResponse, "x")).code(), StatusCode::kProtocol);
  EXPECT_TRUE(decode_status(sample(FrameKind::kResponse, "")).is_ok());
  EXPECT_EQ(decode_status(sample(FrameKind::kCancel, "", {}, {})).code(), StatusCode::kOk);
  EXPECT_EQ(decode_status(sample(FrameKind::kCancel, "", {1}, {})).code(), StatusCode::kProtocol);
  // An error frame needs a status code and carries no tensors.
  EXPECT_EQ(decode_status(sample(FrameKind::kError, "", {}, {})).code(), StatusCode::kProtocol);
  FrameHeader h;
  h.kind = FrameKind::kError;
  h.status = static_cast<uint16_t>(StatusCode::kNotFound);
  auto ok = encode_frame(h, "", {}, {});
  EXPECT_TRUE(decode_status(ok).is_ok());
  h.status = 200;
  EXPECT_EQ(decode_status(encode_frame(h, "", {}, {})).code(), StatusCode::kProtocol);
  EXPECT_EQ(decode_status(sample(FrameKind::kRequest, "bad method")).code(), StatusCode::kProtocol);
}

TEST(Frame, LimitsAtAndBeyond) {
  Limits limits;
  limits.max_method_bytes = 4;
  limits.max_metadata_bytes = 3;
  limits.max_tensors = 3;
  limits.max_tensor_bytes = 2;
  limits.max_message_bytes = 3;
  EXPECT_TRUE(decode_status(sample(), limits).is_ok());
  EXPECT_EQ(decode_status(sample(FrameKind::kRequest, "echo1"), limits).code(),
            StatusCode::kTooLarge);
  EXPECT_EQ(decode_status(sample(FrameKind::kRequest, "echo", {1, 2, 3, 4}), limits).code(),
            StatusCode::kTooLarge);
  EXPECT_EQ(
      decode_status(sample(FrameKind::kRequest, "echo", {}, {{1}, {}, {}, {}}), limits).code(),
      StatusCode::kTooLarge);
  EXPECT_EQ(decode_status(sample(FrameKind::kRequest, "echo", {}, {{1, 2, 3}}), limits).code(),
            StatusCode::kTooLarge);
  EXPECT_EQ(decode_status(sample(FrameKind::kRequest, "echo", {}, {{1, 2}, {1, 2}}), limits).code(),
            StatusCode::kTooLarge);
}

TEST(Frame, DescriptorSumMustMatchPayloadWithoutOverflow) {
  auto b = sample();
  // First descriptor's nbytes (right after the 40-byte header and 4-byte method): make it huge.
  size_t d0 = kFrameHeaderSize + 4;
  for (int i = 0; i < 8; ++i)
    b[d0 + i] = 0xff;
  EXPECT_FALSE(decode_frame(b, Limits{}).is_ok());
  b = sample();
  b[d0] = 1;  // 2 -> 1: sizes no longer add up to payload_len
  EXPECT_EQ(decode_status(b).code(), StatusCode::kProtocol);
  b = sample();
  b[d0 + 8] = 7;  // unknown memory type
  EXPECT_EQ(decode_status(b).code(), StatusCode::kProtocol);
  b = sample();
  b[d0 + 12] = 1;  // reserved descriptor byte
  EXPECT_EQ(decode_status(b).code(), StatusCode::kProtocol);
}

TEST(Frame, HugeTensorCountIsRejectedBeforeAnyAllocation) {
  auto b = sample();
  b[24] = 0xff;
  b[25] = 0xff;
  b[26] = 0xff;
  b[27] = 0xff;
  EXPECT_EQ(decode_status(b).code(), StatusCode::kTooLarge);
  auto h = decode_header(b, Limits{});
  EXPECT_FALSE(h.is_ok());
}

TEST(Frame, PayloadWithoutTensorsIsRejected) {
  FrameHeader h;
  h.kind = FrameKind::kMessage;
  auto b = encode_frame(h, "", {}, {});
  b[32] = 5;  // payload_len 5, no tensors
  EXPECT_EQ(decode_header(b, Limits{}).status().code(), StatusCode::kProtocol);
}

}  // namespace
}  // namespace hivemind::transport
