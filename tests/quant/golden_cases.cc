#include "golden_cases.h"

// GCC 12 at -O3 reports impossible std::vector overflows here (sizes it cannot prove non-negative
// after inlining; GCC bugs 106199/107852). Test-support code only.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif

#include <cstring>
#include <fstream>
#include <iterator>

#include <hivemind/quant/cpu_kernels.h>
#include <hivemind/quant/numeric_spec.h>

namespace hivemind::quant::testing {
namespace {

using spec::bits_float;
using spec::f32_to_bf16;
using spec::f32_to_f16;

constexpr uint32_t kFileMagic = 0x47514d48u;  // "HMQG"
constexpr uint32_t kFileVersion = 1;

struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform() {
    return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
  }  // [0, 1), exact
  // Irwin-Hall(4), scaled to unit variance: gaussian enough, and only + - * on floats.
  float gauss() {
    float s = uniform() + uniform() + uniform() + uniform() - 2.0f;
    return s * 1.7320508f;
  }
};

struct Builder {
  GoldenCase c;
  void push(float x) {
    if (c.dtype == DType::kFloat32) {
      size_t at = c.input.size();
      c.input.resize(at + 4);
      std::memcpy(c.input.data() + at, &x, 4);
    } else {
      uint16_t h = c.dtype == DType::kBFloat16 ? f32_to_bf16(x) : f32_to_f16(x);
      c.input.push_back(static_cast<uint8_t>(h & 0xff));
      c.input.push_back(static_cast<uint8_t>(h >> 8));
    }
    ++c.n;
  }
  void push_bits16(uint16_t h) {  // exact half/bf16 bit patterns (denormals)
    c.input.push_back(static_cast<uint8_t>(h & 0xff));
    c.input.push_back(static_cast<uint8_t>(h >> 8));
    ++c.n;
  }
};

Builder start(std::string name, DType dtype, Scheme scheme, uint32_t block) {
  Builder b;
  b.c.name = std::move(name);
  b.c.dtype = dtype;
  b.c.scheme = scheme;
  b.c.block_size = scheme == Scheme::kPerTensorAbsmaxU8 ? 0 : block;
  b.c.n = 0;
  return b;
}

const float kInf = bits_float(0x7f800000u);
const float kNaN = bits_float(0x7fc00000u);

}  // namespace

std::vector<GoldenCase> golden_cases() {
  std::vector<GoldenCase> cases;
  {  // Two full 4096 blocks and a ragged tail; gaussian with a few outliers.
    auto b = start("f32_block4096_ragged", DType::kFloat32, Scheme::kBlockAbsmaxU8, 4096);
    Rng rng{1};
    for (uint64_t i = 0; i < 2 * 4096 + 777; ++i) {
      float x = rng.gauss() * 3.0f + 0.25f;
      if (i == 17) x = 1.0e4f;
      if (i == 5000) x = -5.0e3f;
      if (i == 8200) x = 123.456f;
      b.push(x);
    }
    cases.push_back(b.c);
  }
  {  // Block 64, one special situation per block, then a ragged tail of 13.
    auto b = start("f32_block64_special", DType::kFloat32, Scheme::kBlockAbsmaxU8, 64);
    Rng rng{2};
    for (int i = 0; i < 64; ++i)
      b.push(i % 2 ? 0.0f : -0.0f);  // zero block
    for (int i = 0; i < 64; ++i)
      b.push(bits_float(1u + 977u * i) * (i % 3 ? 1.f : -1.f));  // denormals only: flushed
    for (int i = 0; i < 64; ++i)
      b.push(i < 32 ? rng.gauss() : bits_float(5u + 31u * i));  // normals and denormals
    for (int i = 0; i < 64; ++i)
      b.push(1.0e-37f * rng.gauss());  // 127/amax overflows
    for (int i = 0; i < 64; ++i)
      b.push(i == 7 ? 4.0e-37f : 3.0e-37f * rng.uniform());  // just above the limit
    for (int i = 0; i < 64; ++i)
      b.push(i == 9 ? 3.0e38f : rng.gauss() * 1.0e30f);  // near FLT_MAX
    for (int i = 0; i < 64; ++i)
      b.push(i == 0 ? 127.0f : static_cast<float>(i % 9) - 4.5f);  // x*inv ties (inv = 1)
    for (int i = 0; i < 64; ++i)
      b.push(rng.gauss());
    for (int i = 0; i < 64; ++i)
      b.push(-2.5f);  // constant negative
    for (int i = 0; i < 64; ++i)
      b.push(i % 2 ? 7.0f : -7.0f);  // alternating +-amax
    for (int i = 0; i < 13; ++i)
      b.push(rng.gauss() * 0.01f);  // ragged tail
    cases.push_back(b.c);
  }
  {  // bf16 input, block 256: gaussian, a zero block, outliers, ragged tail.
    auto b = start("bf16_block256_ragged", DType::kBFloat16, Scheme::kBlockAbsmaxU8, 256);
    Rng rng{3};
    for (uint64_t i = 0; i < 256 * 3 + 100; ++i) {
      float x = (i >= 256 && i < 512) ? 0.0f : rng.gauss();
      if (i == 600) x = 300.0f;
      if (i == 700) x = -1.0e-3f;
      b.push(x);
    }
    cases.push_back(b.c);
  }
  {  // bf16 denormal patterns: a block of denormals (flushed) and one mixing them with normals.
    auto b = start("bf16_block64_denormals", DType::kBFloat16, Scheme::kBlockAbsmaxU8, 64);
    Rng rng{4};
    for (int i = 0; i < 64; ++i)
      b.push_bits16(static_cast<uint16_t>((1 + 2 * i) | (i % 2 ? 0x8000 : 0)));
    for (int i = 0; i < 64; ++i) {
      if (i % 2)
        b.push_bits16(static_cast<uint16_t>(3 + i));
      else
        b.push(rng.gauss() * 1.0e-3f);
    }
    for (int i = 0; i < 20; ++i)
      b.push(rng.gauss());
    cases.push_back(b.c);
  }
  {  // fp16 input, block 128: fp16 denormals, +-65504, ragged.
    auto b = start("f16_block128_ragged", DType::kFloat16, Scheme::kBlockAbsmaxU8, 128);
    Rng rng{5};
    for (int i = 0; i < 128; ++i)
      b.push_bits16(static_cast<uint16_t>((1 + 7 * i) | (i % 2 ? 0x8000 : 0)));
    for (int i = 0; i < 128; ++i)
      b.push(i == 3 ? 65504.0f : (i == 4 ? -65504.0f : rng.gauss() * 100.0f));
    for (int i = 0; i < 128; ++i)
      b.push(rng.gauss());
    for (int i = 0; i < 50; ++i)
      b.push(rng.gauss() * 1.0e-4f);
    cases.push_back(b.c);
  }
  {
    auto b = start("f32_per_tensor", DType::kFloat32, Scheme::kPerTensorAbsmaxU8, 0);
    Rng rng{6};
    for (int i = 0; i < 1000; ++i)
      b.push(i == 500 ? -40.0f : rng.gauss() + 1.0f);
    cases.push_back(b.c);
  }
  {
    auto b = start("bf16_per_tensor", DType::kBFloat16, Scheme::kPerTensorAbsmaxU8, 0);
    Rng rng{7};
    for (int i = 0; i < 777; ++i)
      b.push(rng.gauss() * 1.0e5f);
    cases.push_back(b.c);
  }
  {  // Affine, block 64: post-ReLU, all negative, mixed, zeros, a tiny range (flushed), ragged.
    auto b = start("f32_affine_block64", DType::kFloat32, Scheme::kBlockAffineU8, 64);
    Rng rng{8};
    for (int i = 0; i < 64; ++i) {
      float g = rng.gauss();
      b.push(g > 0 ? g : 0.0f);
    }
    for (int i = 0; i < 64; ++i)
      b.push(-1.0f - rng.uniform() * 5.0f);
    for (int i = 0; i < 64; ++i)
      b.push(rng.gauss() * 2.0f + 1.0f);
    for (int i = 0; i < 64; ++i)
      b.push(0.0f);
    for (int i = 0; i < 64; ++i)
      b.push(1.0e-38f * rng.uniform());
    for (int i = 0; i < 64; ++i)
      b.push(i == 5 ? 1.0e38f : rng.uniform() * 1.0e37f);
    for (int i = 0; i < 30; ++i)
      b.push(rng.uniform() * 3.0f);
    cases.push_back(b.c);
  }
  {
    auto b = start("f16_affine_block64", DType::kFloat16, Scheme::kBlockAffineU8, 64);
    Rng rng{9};
    for (int i = 0; i < 64 * 3 + 7; ++i) {
      float g = rng.gauss() * 4.0f;
      b.push(g > 0 ? g : 0.0f);
    }
    cases.push_back(b.c);
  }
  {  // The non-finite policy: +Inf in block 1, NaN in block 3, -Inf in block 4.
    auto b = start("f32_nonfinite_block64", DType::kFloat32, Scheme::kBlockAbsmaxU8, 64);
    Rng rng{10};
    for (int i = 0; i < 64 * 6; ++i) {
      float x = rng.gauss();
      if (i == 64 + 3) x = kInf;
      if (i == 3 * 64 + 10) x = kNaN;
      if (i == 4 * 64 + 63) x = -kInf;
      b.push(x);
    }
    cases.push_back(b.c);
  }
  {  // Affine: block 2's range overflows float32, block 4 holds NaN.
    auto b = start("f32_affine_nonfinite_block64", DType::kFloat32, Scheme::kBlockAffineU8, 64);
    Rng rng{11};
    for (int i = 0; i < 64 * 5 + 9; ++i) {
      float x = rng.gauss();
      if (i == 2 * 64 + 1) x = 3.0e38f;
      if (i == 2 * 64 + 2) x = -3.0e38f;
      if (i == 4 * 64 + 5) x = kNaN;
      b.push(x);
    }
    cases.push_back(b.c);
  }
  {
    auto b = start("bf16_nonfinite_per_tensor", DType::kBFloat16, Scheme::kPerTensorAbsmaxU8, 0);
    Rng rng{12};
    for (int i = 0; i < 300; ++i)
      b.push(i == 150 ? -kNaN : rng.gauss());
    cases.push_back(b.c);
  }
  cases.push_back(start("f32_empty", DType::kFloat32, Scheme::kBlockAbsmaxU8, 4096).c);
  return cases;
}

GoldenExpected compute_expected(const GoldenCase& c) {
  GoldenExpected e;
  uint64_t nb = num_blocks(c.scheme, c.n, c.block_size);
  std::vector<float> scales(nb);
  e.zero_points.assign(c.scheme == Scheme::kBlockAffineU8 ? nb : 0, 0);
  e.codes.assign(c.n, 0);
  Status st = quantize_cpu(c.input.data(), c.dtype, c.n, c.scheme, c.block_size, scales.data(),
                           e.zero_points.empty() ? nullptr : e.zero_points.data(), e.codes.data());
  e.scales.resize(4 * nb);
  if (nb > 0) std::memcpy(e.scales.data(), scales.data(), 4 * nb);
  if (!st.is_ok()) {
    // The message names the block: "block K of N ..."; the kernels report the same index.
    const std::string& m = st.message();
    auto at = m.find("block ");
    e.first_bad_block = at == std::string::npos ? 0 : std::stoull(m.substr(at + 6));
  }
  return e;
}

namespace {
template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  size_t at = out.size();
  out.resize(at + sizeof v);
  std::memcpy(out.data() + at, &v, sizeof v);
}
template <typename T>
bool get(const std::vector<uint8_t>& in, size_t& at, T& v) {
  if (in.size() - at < sizeof(T) || at > in.size()) return false;
  std::memcpy(&v, in.data() + at, sizeof v);
  at += sizeof v;
  return true;
}
bool take(const std::vector<uint8_t>& in, size_t& at, uint64_t count, std::vector<uint8_t>& out) {
  if (at > in.size() || in.size() - at < count) return false;
  out.assign(in.begin() + static_cast<std::ptrdiff_t>(at),
             in.begin() + static_cast<std::ptrdiff_t>(at + count));
  at += count;
  return true;
}
}  // namespace

// Layout: u32 magic "HMQG", u32 version, u8 dtype, u8 scheme, u16 name length, u32 block size,
// u64 n, u64 first_bad_block, name bytes, input, scales, zero-points (affine), codes.
std::vector<uint8_t> serialize(const GoldenCase& c, const GoldenExpected& e) {
  std::vector<uint8_t> out;
  put(out, kFileMagic);
  put(out, kFileVersion);
  put(out, static_cast<uint8_t>(c.dtype));
  put(out, static_cast<uint8_t>(c.scheme));
  put(out, static_cast<uint16_t>(c.name.size()));
  put(out, c.block_size);
  put(out, c.n);
  put(out, e.first_bad_block);
  auto append = [&out](const void* p, size_t len) {
    size_t at = out.size();
    out.resize(at + len);
    if (len > 0) std::memcpy(out.data() + at, p, len);
  };
  append(c.name.data(), c.name.size());
  append(c.input.data(), c.input.size());
  append(e.scales.data(), e.scales.size());
  append(e.zero_points.data(), e.zero_points.size());
  append(e.codes.data(), e.codes.size());
  return out;
}

std::optional<GoldenFile> parse(const std::vector<uint8_t>& bytes) {
  GoldenFile f;
  size_t at = 0;
  uint32_t magic = 0, version = 0;
  uint8_t dtype = 0, scheme = 0;
  uint16_t name_len = 0;
  if (!get(bytes, at, magic) || magic != kFileMagic || !get(bytes, at, version) ||
      version != kFileVersion) {
    return std::nullopt;
  }
  if (!get(bytes, at, dtype) || !get(bytes, at, scheme) || !get(bytes, at, name_len) ||
      !get(bytes, at, f.input.block_size) || !get(bytes, at, f.input.n) ||
      !get(bytes, at, f.expected.first_bad_block)) {
    return std::nullopt;
  }
  if (dtype > kMaxDTypeValue || scheme > kMaxSchemeValue || f.input.n > (uint64_t{1} << 32))
    return std::nullopt;
  f.input.dtype = static_cast<DType>(dtype);
  f.input.scheme = static_cast<Scheme>(scheme);
  std::vector<uint8_t> name;
  if (!take(bytes, at, name_len, name)) return std::nullopt;
  f.input.name.assign(name.begin(), name.end());
  uint64_t nb = num_blocks(f.input.scheme, f.input.n, f.input.block_size);
  if (!take(bytes, at, f.input.n * dtype_size(f.input.dtype), f.input.input) ||
      !take(bytes, at, 4 * nb, f.expected.scales) ||
      !take(bytes, at, f.input.scheme == Scheme::kBlockAffineU8 ? nb : 0, f.expected.zero_points) ||
      !take(bytes, at, f.input.n, f.expected.codes) || at != bytes.size()) {
    return std::nullopt;
  }
  return f;
}

std::string golden_dir() {
  return HIVEMIND_QUANT_GOLDEN_DIR;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace hivemind::quant::testing
