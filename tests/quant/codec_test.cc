// The wire codec: round trips for every scheme and dtype, header validation of malformed bytes,
// in-place vs copying encodes, and the documented layout.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include <hivemind/quant/codec.h>
#include <hivemind/quant/cpu_kernels.h>
#include <hivemind/quant/numeric_spec.h>

namespace hivemind::quant {
namespace {

std::vector<uint8_t> random_tensor(DType dt, uint64_t n, uint64_t seed, float mean = 0.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(mean, 1.5f);
  std::vector<uint8_t> bytes(n * dtype_size(dt));
  for (uint64_t i = 0; i < n; ++i) {
    float x = dist(rng);
    switch (dt) {
      case DType::kFloat32:
        std::memcpy(&bytes[4 * i], &x, 4);
        break;
      case DType::kFloat16: {
        uint16_t h = spec::f32_to_f16(x);
        std::memcpy(&bytes[2 * i], &h, 2);
        break;
      }
      case DType::kBFloat16: {
        uint16_t h = spec::f32_to_bf16(x);
        std::memcpy(&bytes[2 * i], &h, 2);
        break;
      }
      case DType::kInt64: {
        int64_t v = static_cast<int64_t>(rng());
        std::memcpy(&bytes[8 * i], &v, 8);
        break;
      }
      case DType::kInt32: {
        int32_t v = static_cast<int32_t>(rng());
        std::memcpy(&bytes[4 * i], &v, 4);
        break;
      }
      case DType::kUInt8:
        bytes[i] = static_cast<uint8_t>(rng());
        break;
      case DType::kBool:
        bytes[i] = static_cast<uint8_t>(rng() & 1);
        break;
    }
  }
  return bytes;
}

float element(const std::vector<uint8_t>& b, DType dt, uint64_t i) {
  if (dt == DType::kFloat32) {
    float x;
    std::memcpy(&x, &b[4 * i], 4);
    return x;
  }
  uint16_t h;
  std::memcpy(&h, &b[2 * i], 2);
  return dt == DType::kBFloat16 ? spec::bf16_to_f32(h) : spec::f16_to_f32(h);
}

const Scheme kAllSchemes[] = {
    Scheme::kNone,          Scheme::kFloat16,           Scheme::kBFloat16,
    Scheme::kBlockAbsmaxU8, Scheme::kPerTensorAbsmaxU8, Scheme::kBlockAffineU8};
const DType kFloatTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};

TEST(QuantCodec, RoundTripsEverySchemeAndDtype) {
  const std::vector<int64_t> shape = {3, 5, 301};  // 4515 elements: ragged against every block size
  const uint64_t n = 3 * 5 * 301;
  for (Scheme s : kAllSchemes) {
    for (DType dt : kFloatTypes) {
      auto input = random_tensor(dt, n, 11, 0.5f);
      EncodeOptions opt{s, 256};
      TensorView view{input.data(), dt, shape, true};
      auto enc = encode_to_vector(view, opt);
      ASSERT_TRUE(enc.is_ok()) << enc.status().to_string();
      ASSERT_EQ(enc->size(), *encoded_size(view, opt));
      auto h = decode_header(*enc);
      ASSERT_TRUE(h.is_ok()) << h.status().to_string();
      EXPECT_EQ(h->shape, shape);
      EXPECT_EQ(h->numel, n);
      EXPECT_EQ(h->scheme, s);
      EXPECT_EQ(h->src_dtype, dt);
      EXPECT_TRUE(h->requires_grad);
      for (DType out : kFloatTypes) {
        std::vector<uint8_t> dec(n * dtype_size(out));
        ASSERT_TRUE(decode(*enc, out, dec).is_ok())
            << scheme_name(s) << " " << dtype_name(dt) << "->" << dtype_name(out);
        double se = 0, ss = 0;
        for (uint64_t i = 0; i < n; ++i) {
          double x = element(input, dt, i), y = element(dec, out, i);
          se += (x - y) * (x - y);
          ss += x * x;
        }
        double rel = se / ss;
        // none/fp16/bf16 lose at most a bf16 rounding; the 8-bit schemes ~ 1e-4 relative.
        double bound = is_u8_scheme(s) ? 3e-4 : 2e-5;
        EXPECT_LT(rel, bound) << scheme_name(s) << " " << dtype_name(dt) << "->" << dtype_name(out);
        if (s == Scheme::kNone && out == dt) {
          EXPECT_EQ(dec, input);
        }
      }
    }
  }
}

// decode_add() is decode() into fp32, an fp32 add and an fp32 division, bit for bit, on both loop
// sets, for every scheme and float source, over lengths ragged against the blocks and the vector
// width: from separate values and in place, with and without the division. decode_accumulate() is
// its in-place case without one.
TEST(QuantCodec, DecodeAddEqualsDecodeThenAddThenDivide) {
  const uint64_t n = 4515;
  const int64_t shape[1] = {static_cast<int64_t>(n)};
  auto base_bytes = random_tensor(DType::kFloat32, n, 5, 0.25f);
  std::vector<float> base(n);
  std::memcpy(base.data(), base_bytes.data(), n * sizeof(float));
  for (const char* isa : {"avx2", "portable"}) {
    if (!select_cpu_isa(isa).is_ok()) continue;  // no AVX2 on this CPU
    for (Scheme s : kAllSchemes) {
      for (DType dt : kFloatTypes) {
        auto input = random_tensor(dt, n, 17, -0.5f);
        auto enc = encode_to_vector(TensorView{input.data(), dt, shape, false}, {s, 256});
        ASSERT_TRUE(enc.is_ok()) << enc.status().to_string();
        std::vector<float> decoded(n);
        ASSERT_TRUE(decode(*enc, DType::kFloat32,
                           {reinterpret_cast<uint8_t*>(decoded.data()), n * sizeof(float)})
                        .is_ok());
        for (float divisor : {1.0f, 3.0f, 7.0f}) {
          std::vector<float> expected(n);
          for (uint64_t i = 0; i < n; ++i) {
            float sum = base[i] + decoded[i];
            expected[i] = divisor == 1.0f ? sum : sum / divisor;
          }
          std::vector<float> out(n, -1.0f);
          ASSERT_TRUE(decode_add(*enc, base, out, divisor).is_ok());
          EXPECT_EQ(0, std::memcmp(out.data(), expected.data(), n * sizeof(float)))
              << isa << " " << scheme_name(s) << " " << dtype_name(dt) << " / " << divisor;
          std::vector<float> in_place = base;
          ASSERT_TRUE(decode_add(*enc, in_place, in_place, divisor).is_ok());
          EXPECT_EQ(0, std::memcmp(in_place.data(), expected.data(), n * sizeof(float)))
              << isa << " in place " << scheme_name(s) << " " << dtype_name(dt) << " / " << divisor;
          if (divisor != 1.0f) continue;
          std::vector<float> acc = base;
          ASSERT_TRUE(decode_accumulate(*enc, acc).is_ok());
          EXPECT_EQ(0, std::memcmp(acc.data(), expected.data(), n * sizeof(float)))
              << isa << " accumulate " << scheme_name(s) << " " << dtype_name(dt);
        }
      }
    }
  }
  ASSERT_TRUE(select_cpu_isa("auto").is_ok());
}

TEST(QuantCodec, DecodeAddRefusesMismatchedLengthsAndBadDivisorsAndLeavesTheOutput) {
  const int64_t shape[1] = {100};
  auto floats = random_tensor(DType::kFloat32, 100, 3);
  auto enc = encode_to_vector(TensorView{floats.data(), DType::kFloat32, shape, false},
                              {Scheme::kBlockAbsmaxU8, 64});
  ASSERT_TRUE(enc.is_ok());
  std::vector<float> base(99, 2.0f), out(100, 1.0f);
  Status st = decode_add(*enc, base, out);
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("99 values"), std::string::npos) << st.message();
  base.assign(100, 2.0f);
  for (float divisor :
       {0.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    st = decode_add(*enc, base, out, divisor);
    EXPECT_FALSE(st.is_ok()) << divisor;
    EXPECT_NE(st.message().find("divide"), std::string::npos) << st.message();
  }
  EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](float x) { return x == 1.0f; }));
}

TEST(QuantCodec, DecodeAccumulateRefusesWhatItCannotAddAndLeavesTheAccumulator) {
  const int64_t shape[1] = {100};
  auto floats = random_tensor(DType::kFloat32, 100, 3);
  auto enc = encode_to_vector(TensorView{floats.data(), DType::kFloat32, shape, false},
                              {Scheme::kBlockAbsmaxU8, 64});
  ASSERT_TRUE(enc.is_ok());
  std::vector<float> acc(99, 1.0f);
  Status st = decode_accumulate(*enc, acc);
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("99 elements"), std::string::npos) << st.message();
  EXPECT_TRUE(std::all_of(acc.begin(), acc.end(), [](float x) { return x == 1.0f; }));

  auto ints = random_tensor(DType::kInt32, 100, 3);
  auto raw =
      encode_to_vector(TensorView{ints.data(), DType::kInt32, shape, false}, {Scheme::kNone, 64});
  ASSERT_TRUE(raw.is_ok());
  acc.assign(100, 1.0f);
  st = decode_accumulate(*raw, acc);
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("int32"), std::string::npos) << st.message();
  EXPECT_TRUE(std::all_of(acc.begin(), acc.end(), [](float x) { return x == 1.0f; }));

  std::vector<uint8_t> truncated(enc->begin(), enc->end() - 1);
  EXPECT_FALSE(decode_accumulate(truncated, acc).is_ok());
}

TEST(QuantCodec, RawTypesPassThroughUnderNone) {
  const std::vector<int64_t> shape = {7, 9};
  for (DType dt : {DType::kInt64, DType::kInt32, DType::kUInt8, DType::kBool}) {
    auto input = random_tensor(dt, 63, 5);
    TensorView view{input.data(), dt, shape};
    auto enc = encode_to_vector(view, {Scheme::kNone});
    ASSERT_TRUE(enc.is_ok());
    std::vector<uint8_t> out(input.size());
    ASSERT_TRUE(decode(*enc, dt, out).is_ok());
    EXPECT_EQ(out, input);
    EXPECT_FALSE(decode(*enc, DType::kFloat32,
                        std::span<uint8_t>(out.data(), 63 * 4 > out.size() ? out.size() : 63 * 4))
                     .is_ok());
    EXPECT_FALSE(encode_to_vector(view, {Scheme::kBlockAbsmaxU8}).is_ok());
    EXPECT_FALSE(encode_to_vector(view, {Scheme::kFloat16}).is_ok());
  }
}

TEST(QuantCodec, LayoutMatchesTheDocumentation) {
  std::vector<float> x(100, 1.0f);
  const std::vector<int64_t> shape = {10, 10};
  auto enc = encode_to_vector({x.data(), DType::kFloat32, shape}, {Scheme::kBlockAffineU8, 64});
  ASSERT_TRUE(enc.is_ok());
  const auto& b = *enc;
  EXPECT_EQ(b[0], 'H');
  EXPECT_EQ(b[1], 'M');
  EXPECT_EQ(b[2], 'Q');
  EXPECT_EQ(b[3], '1');
  EXPECT_EQ(b[4] | (b[5] << 8), 1);
  EXPECT_EQ(b[6], static_cast<uint8_t>(Scheme::kBlockAffineU8));
  EXPECT_EQ(b[7], static_cast<uint8_t>(DType::kFloat32));
  EXPECT_EQ(b[9], 2);   // ndim
  EXPECT_EQ(b[10], 6);  // log2(64)
  uint64_t numel;
  std::memcpy(&numel, &b[16], 8);
  EXPECT_EQ(numel, 100u);
  // header 24 + 16 shape = 40 -> scales at 48 (2 blocks, 8 bytes) -> zero-points at 64 -> payload
  // at 80.
  auto h = decode_header(b);
  ASSERT_TRUE(h.is_ok());
  EXPECT_EQ(h->scales_offset, 48u);
  EXPECT_EQ(h->zero_points_offset, 64u);
  EXPECT_EQ(h->payload_offset, 80u);
  EXPECT_EQ(b.size(), 180u);
  for (uint64_t i = 56; i < 64; ++i)
    EXPECT_EQ(b[i], 0) << "padding must be zero";
}

TEST(QuantCodec, EmptyAndScalarTensors) {
  float one = 3.0f;
  for (Scheme s : kAllSchemes) {
    std::vector<int64_t> empty_shape = {4, 0, 2};
    auto e = encode_to_vector({nullptr, DType::kFloat32, empty_shape}, {s});
    ASSERT_TRUE(e.is_ok()) << scheme_name(s);
    auto h = decode_header(*e);
    ASSERT_TRUE(h.is_ok());
    EXPECT_EQ(h->numel, 0u);
    EXPECT_EQ(h->shape, empty_shape);
    EXPECT_TRUE(decode(*e, DType::kFloat32, {}).is_ok());
    auto sc = encode_to_vector({&one, DType::kFloat32, {}}, {s});
    ASSERT_TRUE(sc.is_ok());
    float back = 0;
    ASSERT_TRUE(decode(*sc, DType::kFloat32, {reinterpret_cast<uint8_t*>(&back), 4}).is_ok());
    EXPECT_NEAR(back, 3.0f, 0.02f);
  }
}

TEST(QuantCodec, NonFiniteInputIsRejectedByTheEightBitSchemes) {
  std::vector<float> x(1000, 1.0f);
  x[500] = NAN;
  const std::vector<int64_t> shape = {1000};
  for (Scheme s : {Scheme::kBlockAbsmaxU8, Scheme::kPerTensorAbsmaxU8, Scheme::kBlockAffineU8}) {
    auto r = encode_to_vector({x.data(), DType::kFloat32, shape}, {s, 64});
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
  // The passthrough schemes carry non-finite values as they are.
  auto r = encode_to_vector({x.data(), DType::kFloat32, shape}, {Scheme::kFloat16});
  ASSERT_TRUE(r.is_ok());
  std::vector<float> y(1000);
  ASSERT_TRUE(decode(*r, DType::kFloat32, {reinterpret_cast<uint8_t*>(y.data()), 4000}).is_ok());
  EXPECT_TRUE(std::isnan(y[500]));
}

TEST(QuantCodec, Float16ClampsLikeHivemind) {
  std::vector<float> x = {1.0e6f, -1.0e6f, 65504.0f, 70000.0f, INFINITY};
  const std::vector<int64_t> shape = {5};
  auto r = encode_to_vector({x.data(), DType::kFloat32, shape}, {Scheme::kFloat16});
  ASSERT_TRUE(r.is_ok());
  std::vector<float> y(5);
  ASSERT_TRUE(decode(*r, DType::kFloat32, {reinterpret_cast<uint8_t*>(y.data()), 20}).is_ok());
  EXPECT_EQ(y[0], 65504.0f);
  EXPECT_EQ(y[1], -65504.0f);
  EXPECT_EQ(y[2], 65504.0f);
  EXPECT_EQ(y[3], 65504.0f);
  EXPECT_TRUE(std::isinf(y[4]));
}

// hivemind's in-place 8-bit path loses the mean; ours must give the same bytes as the copying
// encode.
TEST(QuantCodec, InPlaceAndCopyingEncodesGiveIdenticalBytes) {
  const std::vector<std::vector<int64_t>> shapes = {{1},       {3},         {70},         {64, 3},
                                                    {5, 4096}, {1, 100003}, {2, 3, 4, 5}, {0}};
  for (Scheme s : kAllSchemes) {
    for (DType dt : kFloatTypes) {
      for (uint32_t block : {64u, 4096u}) {
        for (const auto& shape : shapes) {
          uint64_t n = 1;
          for (auto d : shape)
            n *= static_cast<uint64_t>(d);
          auto input = random_tensor(dt, n, n + block, /*mean=*/5.0f);  // non-zero mean
          EncodeOptions opt{s, block};
          auto copy = encode_to_vector({input.data(), dt, shape}, opt);
          ASSERT_TRUE(copy.is_ok());
          std::vector<uint8_t> storage = input;
          storage.resize(std::max(storage.size(), copy->size()), 0xab);
          auto written = encode_in_place(storage, dt, shape, false, opt);
          ASSERT_TRUE(written.is_ok()) << written.status().to_string();
          ASSERT_EQ(*written, copy->size());
          storage.resize(*written);
          ASSERT_EQ(storage, *copy)
              << scheme_name(s) << " " << dtype_name(dt) << " block " << block << " n=" << n;
        }
      }
    }
  }
  // And the mean survives the round trip.
  const std::vector<int64_t> shape = {100000};
  auto input = random_tensor(DType::kFloat32, 100000, 3, 5.0f);
  auto enc = encode_in_place(input, DType::kFloat32, shape, false, {Scheme::kBlockAbsmaxU8});
  ASSERT_TRUE(enc.is_ok());
  std::vector<float> y(100000);
  ASSERT_TRUE(
      decode({input.data(), *enc}, DType::kFloat32, {reinterpret_cast<uint8_t*>(y.data()), 400000})
          .is_ok());
  double mean = 0;
  for (float v : y)
    mean += v;
  EXPECT_NEAR(mean / 1e5, 5.0, 0.02);
}

TEST(QuantCodec, EncodeNeverWritesItsInput) {
  auto input = random_tensor(DType::kFloat32, 5000, 1, 2.0f);
  auto before = input;
  const std::vector<int64_t> shape = {5000};
  for (Scheme s : kAllSchemes) {
    ASSERT_TRUE(encode_to_vector({input.data(), DType::kFloat32, shape}, {s, 64}).is_ok());
    EXPECT_EQ(input, before);
  }
}

TEST(QuantCodec, RejectsBadOptionsAndBuffers) {
  std::vector<float> x(100, 1.0f);
  const std::vector<int64_t> shape = {100};
  EXPECT_FALSE(
      encoded_size({x.data(), DType::kFloat32, shape}, {Scheme::kBlockAbsmaxU8, 100}).is_ok());
  EXPECT_FALSE(encoded_size({x.data(), DType::kFloat32, shape}, {static_cast<Scheme>(9)}).is_ok());
  const std::vector<int64_t> negative = {-1, 4};
  EXPECT_FALSE(encoded_size({x.data(), DType::kFloat32, negative}, {}).is_ok());
  const std::vector<int64_t> huge = {int64_t{1} << 62, int64_t{1} << 62};
  EXPECT_FALSE(encoded_size({x.data(), DType::kFloat32, huge}, {}).is_ok());
  std::vector<uint8_t> small(10);
  EXPECT_FALSE(encode({x.data(), DType::kFloat32, shape}, {}, small).is_ok());
  auto enc = encode_to_vector({x.data(), DType::kFloat32, shape}, {});
  ASSERT_TRUE(enc.is_ok());
  std::vector<uint8_t> out(399);
  EXPECT_FALSE(decode(*enc, DType::kFloat32, out).is_ok());
}

class QuantHeaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<float> x(300);
    for (size_t i = 0; i < x.size(); ++i)
      x[i] = static_cast<float>(i) - 100.0f;
    auto e = encode_to_vector({x.data(), DType::kFloat32, shape_}, {Scheme::kBlockAbsmaxU8, 64});
    ASSERT_TRUE(e.is_ok());
    good_ = *e;
    ASSERT_TRUE(decode_header(good_).is_ok());
  }
  Status parse(const std::vector<uint8_t>& b, DecodeLimits limits = {}) {
    return decode_header(b, limits).status();
  }
  std::vector<int64_t> shape_ = {3, 100};
  std::vector<uint8_t> good_;
};

TEST_F(QuantHeaderTest, RejectsEveryMalformedField) {
  auto bad = good_;
  bad[0] = 'X';
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad[4] = 2;  // version
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad[6] = 6;  // scheme
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad[7] = 7;  // dtype
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad[7] = static_cast<uint8_t>(DType::kInt32);  // an int tensor under an 8-bit scheme
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad[8] = 0x02;  // unknown flag
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad[10] = 5;  // block 32
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad[10] = 13;
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad[11] = 1;  // reserved
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad[14] = 1;
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad[24] = 4;  // shape 4 x 100 != 300
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad[16] = 0x2d;  // numel 301 != shape product (and a different size)
  EXPECT_FALSE(parse(bad).is_ok());
  bad = good_;
  bad[31] = 0x80;  // dimension beyond int64
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad.pop_back();  // truncated payload
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  bad = good_;
  bad.push_back(0);  // trailing garbage
  EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol);
  EXPECT_EQ(parse({good_.begin(), good_.begin() + 23}).code(), StatusCode::kProtocol);
  EXPECT_EQ(parse({}).code(), StatusCode::kProtocol);
}

TEST_F(QuantHeaderTest, RejectsNegativeAndNonFiniteScales) {
  auto h = decode_header(good_);
  ASSERT_TRUE(h.is_ok());
  for (uint32_t bits : {0x80000000u, 0xbf800000u, 0x7f800000u, 0x7fc00000u, 0xffffffffu}) {
    auto bad = good_;
    std::memcpy(&bad[h->scales_offset + 4], &bits, 4);
    EXPECT_EQ(parse(bad).code(), StatusCode::kProtocol) << std::hex << bits;
  }
}

TEST_F(QuantHeaderTest, EnforcesTheLimits) {
  EXPECT_EQ(parse(good_, {.max_ndim = 1}).code(), StatusCode::kTooLarge);
  EXPECT_EQ(parse(good_, {.max_numel = 299}).code(), StatusCode::kTooLarge);
  EXPECT_EQ(parse(good_, {.max_bytes = good_.size() - 1}).code(), StatusCode::kTooLarge);
  EXPECT_TRUE(parse(good_, {.max_ndim = 2, .max_numel = 300, .max_bytes = good_.size()}).is_ok());
  // A header claiming 2^40 elements is refused before anything is sized from it.
  auto bad = good_;
  uint64_t big = uint64_t{1} << 40;
  std::memcpy(&bad[16], &big, 8);
  EXPECT_EQ(parse(bad).code(), StatusCode::kTooLarge);
}

TEST_F(QuantHeaderTest, HeaderExtentAndPrefixParsingAgreeWithTheFullParse) {
  auto full = decode_header(good_);
  ASSERT_TRUE(full.is_ok());
  auto extent = header_extent({good_.data(), kFixedHeaderBytes}, good_.size());
  ASSERT_TRUE(extent.is_ok());
  EXPECT_EQ(*extent, full->payload_offset);
  auto prefix = decode_header({good_.data(), *extent}, good_.size());
  ASSERT_TRUE(prefix.is_ok());
  EXPECT_EQ(prefix->shape, full->shape);
  EXPECT_EQ(prefix->total_bytes, full->total_bytes);
  EXPECT_FALSE(decode_header({good_.data(), *extent - 1}, good_.size()).is_ok());
  EXPECT_FALSE(header_extent({good_.data(), kFixedHeaderBytes}, good_.size() + 1).is_ok());
}

}  // namespace
}  // namespace hivemind::quant
