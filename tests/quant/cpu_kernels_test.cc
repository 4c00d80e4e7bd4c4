// The CPU kernels against the numeric spec: edge cases, the error bound, the Gaussian MSE gate, and
// bit identity between the AVX2 and portable loops and across thread counts.
#include <cmath>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <hivemind/quant/cpu_kernels.h>
#include <hivemind/quant/numeric_spec.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace hivemind::quant {
namespace {

using spec::bits_float;
using spec::float_bits;

struct Quantized {
  std::vector<float> scales;
  std::vector<uint8_t> zps;
  std::vector<uint8_t> codes;
  Status status;
};

Quantized run_quantize(const void* in, DType dt, uint64_t n, Scheme s, uint32_t block,
                       int threads = 0) {
  Quantized q;
  uint64_t nb = num_blocks(s, n, block);
  q.scales.assign(nb, -1.0f);
  q.zps.assign(s == Scheme::kBlockAffineU8 ? nb : 0, 0);
  q.codes.assign(n, 0);
  q.status =
      quantize_cpu(in, dt, n, s, block, q.scales.data(), q.zps.empty() ? nullptr : q.zps.data(),
                   q.codes.data(), CpuOptions{threads});
  return q;
}

std::vector<float> run_dequantize(const Quantized& q, uint64_t n, Scheme s, uint32_t block) {
  std::vector<float> out(n);
  EXPECT_TRUE(dequantize_cpu(q.codes.data(), q.scales.data(),
                             q.zps.empty() ? nullptr : q.zps.data(), n, s, block, out.data(),
                             DType::kFloat32)
                  .is_ok());
  return out;
}

std::vector<float> gaussian(uint64_t n, uint64_t seed, float mean = 0.0f, float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (auto& x : v)
    x = dist(rng);
  return v;
}

std::vector<uint16_t> to_half(const std::vector<float>& v, DType dt) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    h[i] = dt == DType::kBFloat16 ? spec::f32_to_bf16(v[i]) : spec::f32_to_f16(v[i]);
  return h;
}

float widen(const std::vector<uint16_t>& h, DType dt, size_t i) {
  return dt == DType::kBFloat16 ? spec::bf16_to_f32(h[i]) : spec::f16_to_f32(h[i]);
}

TEST(QuantSpec, HalfWideningAndNarrowingRoundTripEveryPattern) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = spec::f16_to_f32(static_cast<uint16_t>(h));
    bool nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
    uint16_t back = spec::f32_to_f16(f);
    if (nan) {
      EXPECT_EQ(back, static_cast<uint16_t>((h & 0x8000u) | 0x7e00u)) << h;
    } else {
      EXPECT_EQ(back, h) << h;
    }
    float b = spec::bf16_to_f32(static_cast<uint16_t>(h));
    uint16_t bback = spec::f32_to_bf16(b);
    bool bnan = (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
    EXPECT_EQ(bback, bnan ? static_cast<uint16_t>((h & 0x8000u) | 0x7fc0u) : h) << h;
  }
}

#if defined(__x86_64__)
// The vector form: clang's scalar _cvtss_sh macro uses a C99 compound literal (-Wpedantic).
__attribute__((target("f16c"))) uint16_t hw_f32_to_f16(float x) {
  return static_cast<uint16_t>(
      _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT), 0));
}

// F16C from CPUID leaf 1 (ECX bit 29): clang 14 does not accept "f16c" in __builtin_cpu_supports.
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
}
#endif

TEST(QuantSpec, FloatToHalfMatchesTheHardwareOnSampledBits) {
#if defined(__x86_64__)
  if (!cpu_has_f16c()) GTEST_SKIP() << "no F16C on this CPU";
  for (uint64_t b = 0; b <= 0xffffffffull; b += 257) {
    float x = bits_float(static_cast<uint32_t>(b));
    if (std::isnan(x)) continue;  // the spec canonicalizes NaN; the hardware keeps payload bits
    ASSERT_EQ(spec::f32_to_f16(x), hw_f32_to_f16(x)) << std::hex << b;
  }
#else
  GTEST_SKIP() << "x86 only";
#endif
}

TEST(QuantSpec, BFloat16RoundsToNearestEven) {
  EXPECT_EQ(spec::f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(spec::f32_to_bf16(bits_float(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(spec::f32_to_bf16(bits_float(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(spec::f32_to_bf16(bits_float(0x3f808001u)), 0x3f81);
  EXPECT_EQ(spec::f32_to_bf16(bits_float(0x7f7fffffu)), 0x7f80);  // FLT_MAX rounds to Inf
  EXPECT_EQ(spec::f32_to_bf16(bits_float(0xffc12345u)), 0xffc0);  // NaN canonical, sign kept
  EXPECT_EQ(spec::f32_to_bf16(bits_float(0x00000001u)), 0x0000);  // denormal rounds down
}

TEST(QuantSpec, SymmetricParamsFollowTheSpec) {
  auto z = spec::symmetric_params(0);
  EXPECT_EQ(float_bits(z.scale), 0u);
  EXPECT_FALSE(z.nonfinite);
  // 127/amax overflows below ~3.7e-37: flushed.
  auto tiny = spec::symmetric_params(float_bits(3.0e-37f));
  EXPECT_EQ(tiny.scale, 0.0f);
  EXPECT_EQ(tiny.inv, 0.0f);
  auto ok = spec::symmetric_params(float_bits(4.0e-37f));
  EXPECT_GT(ok.scale, 0.0f);
  EXPECT_TRUE(std::isfinite(ok.inv));
  EXPECT_TRUE(spec::symmetric_params(0x7f800000u).nonfinite);
  EXPECT_EQ(float_bits(spec::symmetric_params(0x7fc00000u).scale), spec::kQuietNanBits);
  auto one = spec::symmetric_params(float_bits(127.0f));
  EXPECT_EQ(one.inv, 1.0f);
  EXPECT_EQ(one.scale, 1.0f);
  // Ties round to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2.
  EXPECT_EQ(spec::symmetric_code(0.5f, 1.0f), 128);
  EXPECT_EQ(spec::symmetric_code(1.5f, 1.0f), 130);
  EXPECT_EQ(spec::symmetric_code(2.5f, 1.0f), 130);
  EXPECT_EQ(spec::symmetric_code(-0.5f, 1.0f), 128);
  EXPECT_EQ(spec::symmetric_code(-1.5f, 1.0f), 126);
  EXPECT_EQ(spec::symmetric_code(127.0f, 1.0f), 255);
  EXPECT_EQ(spec::symmetric_code(-127.0f, 1.0f), 1);
}

TEST(QuantCpu, ZeroBlocksDecodeToExactZero) {
  std::vector<float> x(64 * 3, 0.0f);
  for (int i = 64; i < 128; ++i)
    x[i] = (i % 2) ? -0.0f : 0.0f;
  for (Scheme s : {Scheme::kBlockAbsmaxU8, Scheme::kBlockAffineU8, Scheme::kPerTensorAbsmaxU8}) {
    auto q = run_quantize(x.data(), DType::kFloat32, x.size(), s, 64);
    ASSERT_TRUE(q.status.is_ok());
    for (float sc : q.scales)
      EXPECT_EQ(float_bits(sc), 0u);
    for (float y : run_dequantize(q, x.size(), s, 64))
      EXPECT_EQ(y, 0.0f);
  }
}

TEST(QuantCpu, DenormalAndTinyBlocksAreFlushedToZero) {
  std::vector<float> x(128);
  for (int i = 0; i < 64; ++i)
    x[i] = bits_float(1u + 1000u * i);  // denormals
  for (int i = 64; i < 128; ++i)
    x[i] = 1.5e-37f * ((i % 5) - 2);  // tiny normals, amax 3e-37
  auto q = run_quantize(x.data(), DType::kFloat32, x.size(), Scheme::kBlockAbsmaxU8, 64);
  ASSERT_TRUE(q.status.is_ok());
  EXPECT_EQ(q.scales[0], 0.0f);
  EXPECT_EQ(q.scales[1], 0.0f);
  for (uint8_t c : q.codes)
    EXPECT_EQ(c, 128);
}

TEST(QuantCpu, DenormalsNextToNormalsQuantizeNormally) {
  std::vector<float> x(64, bits_float(123u));
  x[0] = 1.0f;
  auto q = run_quantize(x.data(), DType::kFloat32, x.size(), Scheme::kBlockAbsmaxU8, 64);
  ASSERT_TRUE(q.status.is_ok());
  EXPECT_EQ(q.scales[0], 1.0f / 127.0f);
  EXPECT_EQ(q.codes[0], 255);
  for (int i = 1; i < 64; ++i)
    EXPECT_EQ(q.codes[i], 128);
}

TEST(QuantCpu, NonFiniteBlocksAreRejectedWithDefinedBytes) {
  auto x = gaussian(64 * 4 + 5, 3);
  x[64 * 2 + 7] = std::numeric_limits<float>::quiet_NaN();
  x[64 * 3 + 1] = -std::numeric_limits<float>::infinity();
  for (Scheme s : {Scheme::kBlockAbsmaxU8, Scheme::kBlockAffineU8}) {
    auto q = run_quantize(x.data(), DType::kFloat32, x.size(), s, 64);
    ASSERT_FALSE(q.status.is_ok());
    EXPECT_EQ(q.status.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(q.status.message().find("block 2 of 5"), std::string::npos) << q.status.message();
    EXPECT_EQ(float_bits(q.scales[2]), spec::kQuietNanBits);
    EXPECT_EQ(float_bits(q.scales[3]), spec::kQuietNanBits);
    EXPECT_GT(q.scales[1], 0.0f);
    for (int i = 64 * 2; i < 64 * 4; ++i)
      EXPECT_EQ(q.codes[i], 128);
  }
  auto q = run_quantize(x.data(), DType::kFloat32, x.size(), Scheme::kPerTensorAbsmaxU8, 0);
  EXPECT_FALSE(q.status.is_ok());
  for (uint8_t c : q.codes)
    EXPECT_EQ(c, 128);
}

TEST(QuantCpu, AffineRangeOverflowIsNonFinite) {
  std::vector<float> x(64, 1.0f);
  x[3] = 3.0e38f;
  x[4] = -3.0e38f;
  auto q = run_quantize(x.data(), DType::kFloat32, x.size(), Scheme::kBlockAffineU8, 64);
  EXPECT_FALSE(q.status.is_ok());
}

TEST(QuantCpu, EmptyTensorsAreFine) {
  for (Scheme s : {Scheme::kBlockAbsmaxU8, Scheme::kBlockAffineU8, Scheme::kPerTensorAbsmaxU8}) {
    EXPECT_EQ(num_blocks(s, 0, 64), 0u);
    EXPECT_TRUE(
        quantize_cpu(nullptr, DType::kFloat32, 0, s, 64, nullptr, nullptr, nullptr).is_ok());
    EXPECT_TRUE(
        dequantize_cpu(nullptr, nullptr, nullptr, 0, s, 64, nullptr, DType::kFloat32).is_ok());
  }
}

TEST(QuantCpu, RejectsBadBlockSizesAndDtypes) {
  float x[4] = {};
  float s[4];
  uint8_t c[4];
  for (uint32_t b : {0u, 32u, 100u, 8192u, 96u}) {
    EXPECT_FALSE(
        quantize_cpu(x, DType::kFloat32, 4, Scheme::kBlockAbsmaxU8, b, s, nullptr, c).is_ok())
        << b;
  }
  EXPECT_FALSE(
      quantize_cpu(x, DType::kInt32, 4, Scheme::kBlockAbsmaxU8, 64, s, nullptr, c).is_ok());
  EXPECT_FALSE(quantize_cpu(x, DType::kFloat32, 4, Scheme::kFloat16, 64, s, nullptr, c).is_ok());
  EXPECT_FALSE(
      quantize_cpu(x, DType::kFloat32, 4, Scheme::kBlockAffineU8, 64, s, nullptr, c).is_ok());
}

// |x - x^| <= 0.5 * scale * (1 + 2^-12) for every element of every block that is not flushed.
void check_error_bound(const std::vector<float>& x, DType dt, Scheme s, uint32_t block) {
  std::vector<uint16_t> h;
  const void* in = x.data();
  if (dt != DType::kFloat32) {
    h = to_half(x, dt);
    in = h.data();
  }
  auto q = run_quantize(in, dt, x.size(), s, block);
  ASSERT_TRUE(q.status.is_ok()) << q.status.to_string();
  auto y = run_dequantize(q, x.size(), s, block);
  const uint64_t unit = s == Scheme::kPerTensorAbsmaxU8 ? x.size() : block;
  for (size_t i = 0; i < x.size(); ++i) {
    float xi = dt == DType::kFloat32 ? x[i] : widen(h, dt, i);
    float scale = q.scales[i / unit];
    double err = std::fabs(static_cast<double>(xi) - static_cast<double>(y[i]));
    ASSERT_LE(err, 0.5 * scale * (1.0 + std::ldexp(1.0, -12)))
        << scheme_name(s) << " " << dtype_name(dt) << " block " << block << " i=" << i
        << " x=" << xi << " y=" << y[i] << " scale=" << scale;
  }
}

TEST(QuantCpu, PerElementErrorBoundHoldsForEverySchemeDtypeAndBlock) {
  for (DType dt : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
    for (uint32_t block : {64u, 256u, 4096u}) {
      auto x = gaussian(3 * block + 37, block + static_cast<uint64_t>(dt), 0.3f, 2.0f);
      x[5] = 60.0f;  // an outlier
      check_error_bound(x, dt, Scheme::kBlockAbsmaxU8, block);
      check_error_bound(x, dt, Scheme::kBlockAffineU8, block);
      for (auto& v : x)
        v = std::fabs(v);  // one-sided data: where affine shines
      check_error_bound(x, dt, Scheme::kBlockAffineU8, block);
    }
    check_error_bound(gaussian(10007, 9), dt, Scheme::kPerTensorAbsmaxU8, 0);
  }
}

TEST(QuantCpu, GaussianMseWithBlock4096IsBelowOneE4) {
  const uint64_t n = 1 << 20;
  auto x = gaussian(n, 42);
  auto q = run_quantize(x.data(), DType::kFloat32, n, Scheme::kBlockAbsmaxU8, 4096);
  ASSERT_TRUE(q.status.is_ok());
  auto y = run_dequantize(q, n, Scheme::kBlockAbsmaxU8, 4096);
  double se = 0;
  for (uint64_t i = 0; i < n; ++i)
    se += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
  double mse = se / static_cast<double>(n);
  EXPECT_LE(mse, 1e-4);
  EXPECT_GT(mse, 1e-5);  // 8 bits cannot be much better than ~7e-5: guards against a test that
                         // measures nothing
  RecordProperty("mse", std::to_string(mse));
}

std::vector<float> nasty_values(uint64_t n, uint64_t seed) {
  auto x = gaussian(n, seed);
  std::mt19937_64 rng(seed * 7 + 1);
  for (uint64_t i = 0; i < n; ++i) {
    switch (rng() % 16) {
      case 0:
        x[i] = bits_float(static_cast<uint32_t>(rng() & 0x807fffffu));
        break;  // denormal
      case 1:
        x[i] = 0.0f;
        break;
      case 2:
        x[i] = -0.0f;
        break;
      case 3:
        x[i] *= 1.0e6f;
        break;
      case 4:
        x[i] = std::nearbyint(x[i] * 10.0f) + 0.5f;
        break;  // ties
      default:
        break;
    }
  }
  return x;
}

TEST(QuantCpu, Avx2AndPortableLoopsGiveIdenticalBytes) {
  if (!select_cpu_isa("avx2").is_ok()) GTEST_SKIP() << "no AVX2+F16C here";
  for (DType dt : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
    for (Scheme s : {Scheme::kBlockAbsmaxU8, Scheme::kBlockAffineU8, Scheme::kPerTensorAbsmaxU8}) {
      for (uint32_t block : {64u, 128u, 512u, 4096u}) {
        auto x = nasty_values(2 * block + 61, block * 3 + static_cast<uint64_t>(s));
        x[block / 2] = 1.0e-37f;
        std::vector<uint16_t> h = to_half(x, dt);
        const void* in = dt == DType::kFloat32 ? static_cast<const void*>(x.data()) : h.data();
        ASSERT_TRUE(select_cpu_isa("avx2").is_ok());
        auto a = run_quantize(in, dt, x.size(), s, block);
        std::vector<uint8_t> da[3];
        std::vector<uint8_t> ca[3];
        int k = 0;
        for (DType out : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
          da[k].resize(x.size() * dtype_size(out));
          ASSERT_TRUE(dequantize_cpu(a.codes.data(), a.scales.data(),
                                     a.zps.empty() ? nullptr : a.zps.data(), x.size(), s, block,
                                     da[k].data(), out)
                          .is_ok());
          ca[k].resize(x.size() * dtype_size(out));
          ASSERT_TRUE(convert_cpu(in, dt, x.size(), ca[k].data(), out, k == 2).is_ok());
          ++k;
        }
        ASSERT_TRUE(select_cpu_isa("portable").is_ok());
        auto p = run_quantize(in, dt, x.size(), s, block);
        EXPECT_EQ(a.codes, p.codes);
        EXPECT_EQ(0, std::memcmp(a.scales.data(), p.scales.data(), 4 * a.scales.size()));
        EXPECT_EQ(a.zps, p.zps);
        k = 0;
        for (DType out : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
          std::vector<uint8_t> dp(x.size() * dtype_size(out)), cp(x.size() * dtype_size(out));
          ASSERT_TRUE(dequantize_cpu(p.codes.data(), p.scales.data(),
                                     p.zps.empty() ? nullptr : p.zps.data(), x.size(), s, block,
                                     dp.data(), out)
                          .is_ok());
          ASSERT_TRUE(convert_cpu(in, dt, x.size(), cp.data(), out, k == 2).is_ok());
          EXPECT_EQ(da[k], dp) << "dequantize to " << dtype_name(out);
          EXPECT_EQ(ca[k], cp) << "convert to " << dtype_name(out);
          ++k;
        }
      }
    }
  }
  // NaN and Inf in conversions too.
  std::vector<float> specials = {std::numeric_limits<float>::quiet_NaN(),
                                 -std::numeric_limits<float>::infinity(),
                                 7.0e4f,
                                 -7.0e4f,
                                 65519.0f,
                                 65520.0f,
                                 1e-8f,
                                 -3e-5f,
                                 bits_float(0xff812345u)};
  specials.resize(40, 1.0f);
  for (DType out : {DType::kBFloat16, DType::kFloat16}) {
    for (bool clamp : {false, true}) {
      std::vector<uint8_t> a(specials.size() * 2), p(specials.size() * 2);
      ASSERT_TRUE(select_cpu_isa("avx2").is_ok());
      ASSERT_TRUE(
          convert_cpu(specials.data(), DType::kFloat32, specials.size(), a.data(), out, clamp)
              .is_ok());
      ASSERT_TRUE(select_cpu_isa("portable").is_ok());
      ASSERT_TRUE(
          convert_cpu(specials.data(), DType::kFloat32, specials.size(), p.data(), out, clamp)
              .is_ok());
      EXPECT_EQ(a, p);
    }
  }
  ASSERT_TRUE(select_cpu_isa("auto").is_ok());
}

TEST(QuantCpu, ThreadCountDoesNotChangeBytes) {
  const uint64_t n = 3 * 1000 * 1000 + 17;
  auto x = nasty_values(n, 77);
  for (Scheme s : {Scheme::kBlockAbsmaxU8, Scheme::kBlockAffineU8, Scheme::kPerTensorAbsmaxU8}) {
    auto one = run_quantize(x.data(), DType::kFloat32, n, s, 256, 1);
    for (int threads : {2, 7}) {
      auto many = run_quantize(x.data(), DType::kFloat32, n, s, 256, threads);
      ASSERT_TRUE(many.status.is_ok());
      EXPECT_EQ(one.codes, many.codes) << threads;
      EXPECT_EQ(0, std::memcmp(one.scales.data(), many.scales.data(), 4 * one.scales.size()));
      EXPECT_EQ(one.zps, many.zps);
    }
  }
}

TEST(QuantCpu, ConcurrentCallersShareThePoolSafely) {
  const uint64_t n = 1 << 20;
  std::vector<std::vector<float>> inputs;
  std::vector<Quantized> expected;
  for (int t = 0; t < 4; ++t) {
    inputs.push_back(gaussian(n, 100 + t, static_cast<float>(t)));
    expected.push_back(
        run_quantize(inputs.back().data(), DType::kFloat32, n, Scheme::kBlockAbsmaxU8, 4096, 1));
  }
  std::vector<Quantized> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) {
        got[t] =
            run_quantize(inputs[t].data(), DType::kFloat32, n, Scheme::kBlockAbsmaxU8, 4096, 3);
      }
    });
  }
  for (auto& th : threads)
    th.join();
  for (int t = 0; t < 4; ++t)
    EXPECT_EQ(got[t].codes, expected[t].codes);
}

#if defined(__x86_64__)
TEST(QuantCpu, CallerFlushToZeroModeDoesNotChangeCodes) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i)
    x[i] = bits_float(0x00400000u + 12345u * i);  // denormals
  x[0] = 1.0e-36f;  // normal amax, so the denormals quantize (to 128 or near it)
  auto want = run_quantize(x.data(), DType::kFloat32, x.size(), Scheme::kBlockAbsmaxU8, 64);
  unsigned saved = _mm_getcsr();
  _mm_setcsr(saved | 0x8040u | 0x6000u);  // FTZ + DAZ + round toward zero
  auto got = run_quantize(x.data(), DType::kFloat32, x.size(), Scheme::kBlockAbsmaxU8, 64);
  unsigned after = _mm_getcsr();
  _mm_setcsr(saved);
  EXPECT_EQ(after, saved | 0x8040u | 0x6000u) << "the caller's mode must be restored";
  EXPECT_EQ(want.codes, got.codes);
  EXPECT_EQ(float_bits(want.scales[0]), float_bits(got.scales[0]));
}
#endif

}  // namespace
}  // namespace hivemind::quant
