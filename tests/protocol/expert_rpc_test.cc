#include <gtest/gtest.h>

#include <hivemind/protocol/expert_rpc.h>

namespace hivemind::protocol {
namespace {

ExpertInfo sample_info() {
  ExpertInfo info;
  info.uid = "expert.3.14";
  info.expert_cls = "ffn";
  info.max_batch_size = 4096;
  info.inputs = {{quant::DType::kFloat32, {1024}, quant::Scheme::kBlockAbsmaxU8, 4096}};
  info.outputs = {{quant::DType::kFloat32, {1024}, quant::Scheme::kBlockAbsmaxU8, 256},
                  {quant::DType::kBFloat16, {2, 3}, quant::Scheme::kNone, 4096}};
  return info;
}

TEST(ExpertRpcTest, ExpertInfoRoundTrips) {
  ExpertInfo info = sample_info();
  auto decoded = decode_expert_info(encode_expert_info(info));
  ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
  EXPECT_EQ(*decoded, info);
}

TEST(ExpertRpcTest, CallRoundTrips) {
  auto uid = decode_call(encode_call("expert.0.7"));
  ASSERT_TRUE(uid.is_ok());
  EXPECT_EQ(*uid, "expert.0.7");
}

TEST(ExpertRpcTest, EveryTruncationIsAnErrorNotACrash) {
  std::vector<uint8_t> bytes = encode_expert_info(sample_info());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto decoded = decode_expert_info(std::span(bytes.data(), n));
    EXPECT_FALSE(decoded.is_ok()) << "prefix of " << n << " bytes decoded";
  }
}

TEST(ExpertRpcTest, TrailingBytesAreRejected) {
  std::vector<uint8_t> bytes = encode_call("expert.1");
  bytes.push_back(0);
  EXPECT_EQ(decode_call(bytes).status().code(), StatusCode::kProtocol);
}

TEST(ExpertRpcTest, LimitsAreEnforcedAtLimitPlusOne) {
  Limits limits;
  limits.max_uid_bytes = 8;
  EXPECT_TRUE(decode_call(encode_call("expert.1"), limits).is_ok());        // 8 bytes
  EXPECT_EQ(decode_call(encode_call("expert.12"), limits).status().code(),  // 9 bytes
            StatusCode::kTooLarge);

  ExpertInfo info = sample_info();
  limits = Limits{};
  limits.max_tensors = 2;
  EXPECT_TRUE(decode_expert_info(encode_expert_info(info), limits).is_ok());
  info.outputs.push_back(info.outputs.front());
  EXPECT_EQ(decode_expert_info(encode_expert_info(info), limits).status().code(),
            StatusCode::kTooLarge);

  info = sample_info();
  limits = Limits{};
  limits.max_ndim = 1;
  info.outputs.pop_back();
  EXPECT_TRUE(decode_expert_info(encode_expert_info(info), limits).is_ok());
  info.inputs[0].shape = {4, 4};
  EXPECT_EQ(decode_expert_info(encode_expert_info(info), limits).status().code(),
            StatusCode::kTooLarge);

  // Elements per sample: the product of the shape, without overflowing on the way.
  info = sample_info();
  limits = Limits{};
  limits.max_sample_elements = 12;
  info.inputs[0].shape = {12};
  info.outputs[0].shape = {1, 1, 3};
  info.outputs[1].shape = {2, 6};
  EXPECT_TRUE(decode_expert_info(encode_expert_info(info), limits).is_ok());
  info.outputs[1].shape = {13};
  EXPECT_EQ(decode_expert_info(encode_expert_info(info), limits).status().code(),
            StatusCode::kTooLarge);
  info.outputs[1].shape = {0, int64_t{1} << 31};  // empty: nothing to allocate
  EXPECT_TRUE(decode_expert_info(encode_expert_info(info), limits).is_ok());
  info = sample_info();
  limits = Limits{};
  const int64_t big = int64_t{1} << 31;
  info.inputs[0].shape = {big, big, big, big, big, big, big, big};  // 2^248 if multiplied
  const auto refused = decode_expert_info(encode_expert_info(info), limits);
  EXPECT_EQ(refused.status().code(), StatusCode::kTooLarge);
  EXPECT_NE(refused.status().message().find("elements per sample"), std::string::npos)
      << refused.status().to_string();
}

TEST(ExpertRpcTest, BadEnumsAndDimsAreProtocolErrors) {
  ExpertInfo info = sample_info();
  info.inputs[0].shape = {-1};
  EXPECT_EQ(decode_expert_info(encode_expert_info(info)).status().code(), StatusCode::kProtocol);

  std::vector<uint8_t> bytes = encode_expert_info(sample_info());
  // The first schema starts after magic(4) version(1) uid(2+11) cls(2+3) max_batch(4) count(1).
  size_t schema = 4 + 1 + 2 + 11 + 2 + 3 + 4 + 1;
  bytes[schema] = 0x7f;  // dtype
  EXPECT_EQ(decode_expert_info(bytes).status().code(), StatusCode::kProtocol);
}

TEST(ExpertRpcTest, UidsAreValidated) {
  EXPECT_TRUE(validate_uid("ffn.3.14").is_ok());
  EXPECT_FALSE(validate_uid("").is_ok());
  EXPECT_FALSE(validate_uid("has space").is_ok());
  EXPECT_FALSE(validate_uid("../etc/passwd").is_ok());
  // The one uid grammar (common/expert_uid.h), as the DHT and the server check it.
  EXPECT_FALSE(validate_uid("expert").is_ok());
  EXPECT_FALSE(validate_uid("expert.01").is_ok());
  EXPECT_FALSE(validate_uid("a/b.0").is_ok());
  EXPECT_EQ(decode_call(encode_call("bad uid")).status().code(), StatusCode::kInvalidArgument);
  // The error escapes what came from the network.
  EXPECT_NE(validate_uid("a\nb.0").message().find("\\n"), std::string::npos)
      << validate_uid("a\nb.0").message();
}

TEST(ExpertRpcTest, NewerVersionIsUnsupported) {
  std::vector<uint8_t> bytes = encode_call("expert.1");
  bytes[4] = 2;
  EXPECT_EQ(decode_call(bytes).status().code(), StatusCode::kUnsupported);
}

}  // namespace
}  // namespace hivemind::protocol
