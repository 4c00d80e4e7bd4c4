// The LibTorch adaptor: round trips of CPU tensors (contiguous and not, every float dtype),
// agreement with the core codec, requires_grad, errors; the CUDA cases run where a GPU and a CUDA
// LibTorch exist.
#include <cstring>
#include <memory>
#include <vector>

#include <gtest/gtest.h>
#include <test_env.h>
#include <torch/cuda.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/quant/torch_codec.h>

namespace hivemind::quant {
namespace {

torch::Tensor bytes_of(const torch::Tensor& encoded) {
  return encoded.cpu();
}

// Encoded bytes in memory whose release the test observes, as a transport buffer would hold them.
struct OwnedBytes {
  std::shared_ptr<std::vector<uint8_t>> storage;
  std::shared_ptr<bool> released = std::make_shared<bool>(false);
  std::span<uint8_t> bytes;
  std::shared_ptr<void> owner;
};

// `offset` bytes of slack before the encoding shift its alignment.
OwnedBytes owned_encoding(const torch::Tensor& x, const EncodeOptions& options, size_t offset = 0) {
  OwnedBytes out;
  torch::Tensor enc = encode_tensor(x, options).value_or_throw();
  out.storage =
      std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(enc.numel()) + offset + 64);
  // 64-byte alignment of the encoding's first byte, as transport buffers have, plus `offset`.
  auto base = reinterpret_cast<uintptr_t>(out.storage->data());
  size_t pad = (64 - base % 64) % 64 + offset;
  std::memcpy(out.storage->data() + pad, enc.data_ptr(), static_cast<size_t>(enc.numel()));
  out.bytes = {out.storage->data() + pad, static_cast<size_t>(enc.numel())};
  auto released = out.released;
  out.owner = std::shared_ptr<void>(nullptr,
                                    [storage = out.storage, released](void*) { *released = true; });
  return out;
}

TEST(QuantTorch, RawBytesInTheirOwnDtypeDecodeToAViewThatKeepsTheOwnerAlive) {
  torch::manual_seed(1);
  torch::Tensor x = torch::randn({32, 1024}).set_requires_grad(true);
  OwnedBytes enc = owned_encoding(x, {Scheme::kNone});
  ASSERT_TRUE(decode_aliases(enc.bytes));
  ASSERT_TRUE(decode_aliases(enc.bytes, torch::kFloat32));
  auto view = decode_tensor_borrowing(enc.bytes, std::move(enc.owner), torch::kFloat32);
  ASSERT_TRUE(view.is_ok()) << view.status().to_string();
  auto* first = static_cast<uint8_t*>(view->data_ptr());
  EXPECT_GE(first, enc.bytes.data());
  EXPECT_LE(first + view->nbytes(), enc.bytes.data() + enc.bytes.size());
  EXPECT_TRUE(torch::equal(view->detach(), x.detach()));
  EXPECT_TRUE(view->requires_grad());
  EXPECT_FALSE(*enc.released);
  *view = torch::Tensor();
  EXPECT_TRUE(*enc.released);  // the last reference to the view let the bytes go
}

TEST(QuantTorch, BytesThatNeedMathOrAreMisalignedDecodeToAFreshTensor) {
  torch::manual_seed(2);
  torch::Tensor x = torch::randn({8, 100});
  struct Case {
    const char* what;
    EncodeOptions options;
    std::optional<c10::ScalarType> dtype;
    size_t offset;
  };
  for (const Case& c : {Case{"quantized", {Scheme::kBlockAbsmaxU8, 64}, std::nullopt, 0},
                        Case{"fp16 on the wire", {Scheme::kFloat16}, std::nullopt, 0},
                        Case{"converted to bf16", {Scheme::kNone}, torch::kBFloat16, 0},
                        Case{"payload off its alignment", {Scheme::kNone}, std::nullopt, 1}}) {
    OwnedBytes enc = owned_encoding(x, c.options, c.offset);
    EXPECT_FALSE(decode_aliases(enc.bytes, c.dtype)) << c.what;
    auto expected = decode_tensor(std::span<const uint8_t>(enc.bytes), torch::kCPU, c.dtype);
    ASSERT_TRUE(expected.is_ok()) << c.what;
    auto fresh = decode_tensor_borrowing(enc.bytes, std::move(enc.owner), c.dtype);
    ASSERT_TRUE(fresh.is_ok()) << c.what << ": " << fresh.status().to_string();
    EXPECT_TRUE(torch::equal(*fresh, *expected)) << c.what;
    EXPECT_TRUE(*enc.released) << c.what;  // nothing holds on to the bytes
  }
}

TEST(QuantTorch, MalformedBytesNeitherAliasNorDecode) {
  OwnedBytes enc = owned_encoding(torch::ones({4, 4}), {Scheme::kNone});
  std::span<uint8_t> truncated = enc.bytes.first(enc.bytes.size() - 1);
  EXPECT_FALSE(decode_aliases(truncated));
  EXPECT_FALSE(decode_tensor_borrowing(truncated, enc.owner).is_ok());
  enc.bytes[0] ^= 0xff;  // the magic
  EXPECT_FALSE(decode_aliases(enc.bytes));
  EXPECT_FALSE(decode_tensor_borrowing(enc.bytes, enc.owner).is_ok());
}

TEST(QuantTorch, RoundTripsEverySchemeAndDtype) {
  torch::manual_seed(0);
  for (Scheme s : {Scheme::kNone, Scheme::kFloat16, Scheme::kBFloat16, Scheme::kBlockAbsmaxU8,
                   Scheme::kPerTensorAbsmaxU8, Scheme::kBlockAffineU8}) {
    for (auto dt : {torch::kFloat32, torch::kFloat16, torch::kBFloat16}) {
      torch::Tensor x = (torch::randn({17, 33, 9}) * 2 + 1).to(dt);
      auto enc = encode_tensor(x, {s, 128});
      ASSERT_TRUE(enc.is_ok()) << enc.status().to_string();
      EXPECT_EQ(enc->scalar_type(), torch::kUInt8);
      EXPECT_EQ(static_cast<size_t>(enc->numel()), *encoded_size(x, {s, 128}));
      auto dec = decode_tensor(*enc);
      ASSERT_TRUE(dec.is_ok()) << dec.status().to_string();
      EXPECT_EQ(dec->sizes(), x.sizes());
      EXPECT_EQ(dec->scalar_type(), dt);
      double rel = ((dec->to(torch::kFloat64) - x.to(torch::kFloat64)).pow(2).sum() /
                    x.to(torch::kFloat64).pow(2).sum())
                       .item<double>();
      EXPECT_LT(rel, is_u8_scheme(s) ? 3e-4 : 2e-5) << scheme_name(s);
      auto as_f32 = decode_tensor(*enc, std::optional<c10::ScalarType>(torch::kFloat32));
      ASSERT_TRUE(as_f32.is_ok());
      EXPECT_EQ(as_f32->scalar_type(), torch::kFloat32);
    }
  }
}

TEST(QuantTorch, NonContiguousInputsEncodeLikeTheirContiguousCopy) {
  torch::manual_seed(1);
  torch::Tensor base = torch::randn({64, 48}) + 3.0;
  std::vector<torch::Tensor> views = {base.t(), base.slice(1, 5, 40, 3),
                                      base.narrow(0, 10, 20).transpose(0, 1),
                                      base.expand({2, 64, 48})};
  for (const auto& v : views) {
    ASSERT_FALSE(v.is_contiguous());
    auto a = encode_tensor(v, {Scheme::kBlockAbsmaxU8, 64});
    auto b = encode_tensor(v.contiguous(), {Scheme::kBlockAbsmaxU8, 64});
    ASSERT_TRUE(a.is_ok() && b.is_ok());
    EXPECT_TRUE(torch::equal(*a, *b));
    auto dec = decode_tensor(*a);
    ASSERT_TRUE(dec.is_ok());
    EXPECT_EQ(dec->sizes(), v.sizes());
    EXPECT_LT((*dec - v).abs().max().item<float>(), 0.05f);
  }
}

TEST(QuantTorch, MatchesTheCoreCodecAndTheHostSpanPaths) {
  torch::Tensor x = torch::randn({1000}) * 5;
  auto enc = encode_tensor(x, {});
  ASSERT_TRUE(enc.is_ok());
  std::vector<float> host(x.data_ptr<float>(), x.data_ptr<float>() + 1000);
  const std::vector<int64_t> shape = {1000};
  auto core = encode_to_vector({host.data(), DType::kFloat32, shape}, {});
  ASSERT_TRUE(core.is_ok());
  ASSERT_EQ(static_cast<size_t>(enc->numel()), core->size());
  EXPECT_EQ(0, std::memcmp(enc->data_ptr<uint8_t>(), core->data(), core->size()));
  std::vector<uint8_t> into(core->size());
  ASSERT_TRUE(encode_tensor_into(x, {}, into).is_ok());
  EXPECT_EQ(into, *core);
  auto dec = decode_tensor(std::span<const uint8_t>(into), torch::kCPU);
  ASSERT_TRUE(dec.is_ok());
  EXPECT_LT((*dec - x).abs().max().item<float>(), 0.2f);
}

TEST(QuantTorch, CarriesRequiresGradAndRawDtypes) {
  torch::Tensor x = torch::randn({4, 4}, torch::requires_grad());
  auto enc = encode_tensor(x, {});
  ASSERT_TRUE(enc.is_ok());
  auto dec = decode_tensor(*enc);
  ASSERT_TRUE(dec.is_ok());
  EXPECT_TRUE(dec->requires_grad());
  torch::Tensor ids = torch::arange(0, 100, torch::kInt64).reshape({10, 10});
  auto e2 = encode_tensor(ids, {Scheme::kNone});
  ASSERT_TRUE(e2.is_ok());
  auto d2 = decode_tensor(*e2);
  ASSERT_TRUE(d2.is_ok());
  EXPECT_TRUE(torch::equal(*d2, ids));
  EXPECT_FALSE(encode_tensor(ids, {Scheme::kBlockAbsmaxU8}).is_ok());
  EXPECT_FALSE(decode_tensor(*e2, std::optional<c10::ScalarType>(torch::kFloat32)).is_ok());
}

TEST(QuantTorch, RejectsWhatItCannotCarry) {
  EXPECT_FALSE(encode_tensor(torch::randn({4}, torch::kFloat64), {}).is_ok());
  torch::Tensor bad_nan = torch::ones({100});
  bad_nan[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(encode_tensor(bad_nan, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(decode_tensor(torch::zeros({10}, torch::kUInt8)).is_ok());
  EXPECT_FALSE(decode_tensor(torch::zeros({10}, torch::kFloat32)).is_ok());
}

TEST(QuantTorch, CudaTensorsRoundTripOnTheDevice) {
  HIVEMIND_REQUIRE_CUDA();
  if (!torch::cuda::is_available()) GTEST_SKIP() << "LibTorch in this build has no CUDA";
  torch::manual_seed(2);
  for (auto dt : {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
    torch::Tensor cpu = (torch::randn({33, 257}) + 0.5).to(dt);
    torch::Tensor gpu = cpu.cuda();
    for (Scheme s : {Scheme::kBlockAbsmaxU8, Scheme::kBlockAffineU8, Scheme::kPerTensorAbsmaxU8,
                     Scheme::kFloat16, Scheme::kBFloat16, Scheme::kNone}) {
      auto eg = encode_tensor(gpu.t(), {s, 256});  // non-contiguous on the device
      auto ec = encode_tensor(cpu.t(), {s, 256});
      ASSERT_TRUE(eg.is_ok() && ec.is_ok()) << eg.status().to_string();
      EXPECT_TRUE(eg->is_cuda());
      EXPECT_TRUE(torch::equal(bytes_of(*eg), *ec))
          << scheme_name(s);  // same bytes from both devices
      auto dg = decode_tensor(*eg);
      ASSERT_TRUE(dg.is_ok()) << dg.status().to_string();
      EXPECT_TRUE(dg->is_cuda());
      auto dc = decode_tensor(*ec);
      EXPECT_TRUE(torch::equal(dg->cpu(), *dc));
      auto up = decode_tensor(std::span<const uint8_t>(ec->data_ptr<uint8_t>(), ec->numel()),
                              gpu.device());
      ASSERT_TRUE(up.is_ok());
      EXPECT_TRUE(torch::equal(up->cpu(), *dc));
    }
  }
}

}  // namespace
}  // namespace hivemind::quant
