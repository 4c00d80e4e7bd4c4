// Vocabulary of the quant module: compression schemes, element types, and the options that pick
// them.
//
// The numeric values of Scheme and DType are wire values (docs/wire-formats.md, "Quantized
// tensors"): never renumber them, only append.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace hivemind::quant {

enum class Scheme : uint8_t {
  kNone = 0,      // raw bytes of the source dtype
  kFloat16 = 1,   // IEEE half passthrough (finite values clamp to +-65504, as hivemind's FLOAT16)
  kBFloat16 = 2,  // bfloat16 passthrough
  kBlockAbsmaxU8 = 3,      // symmetric absmax per block of 64..4096 elements (the default)
  kPerTensorAbsmaxU8 = 4,  // symmetric absmax, one scale for the whole tensor
  kBlockAffineU8 =
      5,  // min/max per block with an integer zero-point (one-sided data, e.g. post-ReLU)
};
inline constexpr uint8_t kMaxSchemeValue = 5;

enum class DType : uint8_t {
  kFloat32 = 0,
  kFloat16 = 1,
  kBFloat16 = 2,
  // Raw passthrough types: only Scheme::kNone carries them.
  kInt64 = 3,
  kInt32 = 4,
  kUInt8 = 5,
  kBool = 6,
};
inline constexpr uint8_t kMaxDTypeValue = 6;

constexpr size_t dtype_size(DType d) {
  switch (d) {
    case DType::kFloat32:
      return 4;
    case DType::kFloat16:
      return 2;
    case DType::kBFloat16:
      return 2;
    case DType::kInt64:
      return 8;
    case DType::kInt32:
      return 4;
    case DType::kUInt8:
      return 1;
    case DType::kBool:
      return 1;
  }
  return 0;
}

constexpr bool is_floating(DType d) {
  return d == DType::kFloat32 || d == DType::kFloat16 || d == DType::kBFloat16;
}

// True for the three 8-bit schemes (scales + codes on the wire).
constexpr bool is_u8_scheme(Scheme s) {
  return s == Scheme::kBlockAbsmaxU8 || s == Scheme::kPerTensorAbsmaxU8 ||
         s == Scheme::kBlockAffineU8;
}
constexpr bool is_blockwise(Scheme s) {
  return s == Scheme::kBlockAbsmaxU8 || s == Scheme::kBlockAffineU8;
}

std::string_view scheme_name(Scheme s);  // "block_absmax_u8", ...
std::string_view dtype_name(DType d);    // "float32", ...
std::optional<Scheme> parse_scheme(std::string_view name);
std::optional<DType> parse_dtype(std::string_view name);

inline constexpr uint32_t kDefaultBlockSize = 4096;
inline constexpr uint32_t kMinBlockSize = 64;
inline constexpr uint32_t kMaxBlockSize = 4096;

// Options of the CPU kernels. Threads split the blocks of one call; small tensors stay on the
// caller's thread because waking workers costs more than it saves below ~256 Ki elements.
struct CpuOptions {
  int num_threads = 0;  // 0: HIVEMIND_QUANT_THREADS, else the machine's hardware threads
};

struct EncodeOptions {
  Scheme scheme = Scheme::kBlockAbsmaxU8;
  uint32_t block_size = kDefaultBlockSize;  // blockwise schemes only: a power of two in [64, 4096]
  CpuOptions cpu{};
};

// A tensor in host memory, contiguous, row-major.
struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::kFloat32;
  std::span<const int64_t> shape{};
  bool requires_grad = false;  // carried in the header flags, for the receiver's autograd
};

}  // namespace hivemind::quant
