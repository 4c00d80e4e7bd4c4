#include <vector>

#include <gtest/gtest.h>

#include <hivemind/averaging/tensor_ref.h>

namespace hivemind::averaging {
namespace {

TEST(CheckRoundTensors, AcceptsFloatTensorsOfOneDevice) {
  std::vector<float> a(3);
  std::vector<uint16_t> b(5);
  std::vector<TensorRef> tensors = {{a.data(), a.size(), quant::DType::kFloat32},
                                    {b.data(), b.size(), quant::DType::kBFloat16}};
  EXPECT_TRUE(check_round_tensors(tensors).is_ok());
  EXPECT_EQ(total_bytes(tensors), 3u * 4 + 5u * 2);
}

TEST(CheckRoundTensors, RefusesWhatNoBackendAverages) {
  std::vector<float> a(3);
  std::vector<int64_t> i(2);
  EXPECT_EQ(check_round_tensors({}).code(), StatusCode::kInvalidArgument);

  std::vector<TensorRef> integer = {{a.data(), a.size(), quant::DType::kFloat32},
                                    {i.data(), i.size(), quant::DType::kInt64}};
  Status s = check_round_tensors(integer);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tensor 1"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("int64"), std::string::npos) << s.message();

  std::vector<TensorRef> empty = {{a.data(), 0, quant::DType::kFloat32}};
  EXPECT_EQ(check_round_tensors(empty).code(), StatusCode::kInvalidArgument);

  std::vector<TensorRef> null = {{nullptr, 3, quant::DType::kFloat32}};
  EXPECT_EQ(check_round_tensors(null).code(), StatusCode::kInvalidArgument);

  TensorRef on_gpu{a.data(), a.size(), quant::DType::kFloat32, transport::MemoryType::kCuda, 0};
  std::vector<TensorRef> mixed = {{a.data(), a.size(), quant::DType::kFloat32}, on_gpu};
  s = check_round_tensors(mixed);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("one device"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace hivemind::averaging
