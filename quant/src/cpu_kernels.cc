// Blocking, threading and the per-block numeric decisions of the CPU path. The per-element loops
// live in cpu_isa_*.cc; the decisions (scale, zero-point, zero/tiny/non-finite blocks) come from
// numeric_spec.h, shared with the CUDA kernels.
#include <hivemind/quant/cpu_kernels.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include <fmt/format.h>

#include <hivemind/common/env.h>
#include <hivemind/common/logging.h>
#include <hivemind/quant/numeric_spec.h>

#include "cpu_internal.h"
#include "cpu_isa.h"
#include "thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define HIVEMIND_QUANT_X86 1
#else
#include <cfenv>
#endif

namespace hivemind::quant {
namespace {

using detail::IsaKernels;

// Round-to-nearest-even with denormals kept, for the duration of one piece of work, whatever the
// calling thread set (LibTorch's set_flush_denormal sets FTZ/DAZ, which would change codes).
class FpEnvGuard {
 public:
#ifdef HIVEMIND_QUANT_X86
  FpEnvGuard() : saved_(_mm_getcsr()) {
    _mm_setcsr(0x1f80u);
  }  // all exceptions masked, RNE, no FTZ/DAZ
  ~FpEnvGuard() {
    _mm_setcsr(saved_);
  }

 private:
  unsigned saved_;
#else
  FpEnvGuard() : saved_(std::fegetround()) {
    std::fesetround(FE_TONEAREST);
  }
  ~FpEnvGuard() {
    std::fesetround(saved_);
  }

 private:
  int saved_;
#endif
};

bool cpu_has_avx2() {
#ifdef HIVEMIND_QUANT_X86
  __builtin_cpu_init();
  // F16C from CPUID leaf 1 (ECX bit 29): clang does not accept "f16c" in __builtin_cpu_supports.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
  return __builtin_cpu_supports("avx2") && f16c;
#else
  return false;
#endif
}

const IsaKernels* default_kernels() {
  auto forced = env_string("HIVEMIND_QUANT_ISA");
  if (forced && *forced == "portable") return &detail::portable_kernels();
  const IsaKernels* avx2 = detail::avx2_kernels();
  if (avx2 != nullptr && cpu_has_avx2()) return avx2;
  return &detail::portable_kernels();
}

std::atomic<const IsaKernels*>& selected_kernels() {
  static std::atomic<const IsaKernels*> selected{default_kernels()};
  return selected;
}

const IsaKernels& kernels() {
  return *selected_kernels().load(std::memory_order_acquire);
}

// Work below this many elements stays on the calling thread.
constexpr uint64_t kParallelThreshold = 256 * 1024;
// Elements per task: large enough to amortize a task, small enough to balance 2..64 threads.
constexpr uint64_t kElementsPerTask = 64 * 1024;

int resolve_threads(const CpuOptions& options) {
  return options.num_threads > 0 ? options.num_threads : default_num_threads();
}

// Runs fn(first, count) over [0, n) in pieces aligned to `align` elements.
template <typename Fn>
void for_chunks(uint64_t n, uint64_t align, const CpuOptions& options, Fn&& fn) {
  int threads = resolve_threads(options);
  if (n < kParallelThreshold || threads <= 1) {
    FpEnvGuard guard;
    fn(uint64_t{0}, n);
    return;
  }
  uint64_t chunk = std::max<uint64_t>(align, (kElementsPerTask / align) * align);
  uint64_t tasks = (n + chunk - 1) / chunk;
  std::function<void(size_t)> task = [&](size_t t) {
    FpEnvGuard guard;
    uint64_t first = static_cast<uint64_t>(t) * chunk;
    fn(first, std::min(chunk, n - first));
  };
  detail::ThreadPool::shared().parallel_for(static_cast<size_t>(tasks), threads, task);
}

const void* offset_ptr(const void* p, DType d, uint64_t i) {
  return static_cast<const uint8_t*>(p) + i * dtype_size(d);
}
void* offset_ptr(void* p, DType d, uint64_t i) {
  return static_cast<uint8_t*>(p) + i * dtype_size(d);
}

Status nonfinite_error(uint64_t block, uint64_t blocks) {
  return invalid_argument_error(
      fmt::format("quant: block {} of {} holds Inf or NaN (or an affine range beyond float32): the "
                  "8-bit schemes "
                  "reject non-finite tensors (numeric_spec.h, section 4)",
                  block, blocks));
}

void note_nonfinite(std::atomic<uint64_t>& first_bad, uint64_t block) {
  uint64_t cur = first_bad.load(std::memory_order_relaxed);
  while (block < cur && !first_bad.compare_exchange_weak(cur, block, std::memory_order_relaxed)) {
  }
}

Status check_float(DType d, const char* what) {
  if (!is_floating(d)) {
    return invalid_argument_error(
        fmt::format("quant: {} dtype {} is not a float type", what, dtype_name(d)));
  }
  return Status::ok();
}

}  // namespace

int default_num_threads() {
  static const int threads = [] {
    auto env = env_int("HIVEMIND_QUANT_THREADS");
    if (env.is_ok() && env->has_value() && **env > 0)
      return static_cast<int>(std::min<int64_t>(**env, 256));
    if (!env.is_ok()) logger("quant")->warn("{}", env.status().to_string());
    unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }();
  return threads;
}

const char* cpu_isa_name() {
  return kernels().name;
}

Status select_cpu_isa(std::string_view name) {
  const IsaKernels* chosen = nullptr;
  if (name == "portable") {
    chosen = &detail::portable_kernels();
  } else if (name == "avx2") {
    if (detail::avx2_kernels() == nullptr || !cpu_has_avx2()) {
      return unsupported_error("quant: this CPU or build has no AVX2+F16C loops");
    }
    chosen = detail::avx2_kernels();
  } else if (name == "auto") {
    chosen = default_kernels();
  } else {
    return invalid_argument_error(fmt::format("quant: unknown CPU loop set '{}'", name));
  }
  selected_kernels().store(chosen, std::memory_order_release);
  return Status::ok();
}

uint64_t num_blocks(Scheme scheme, uint64_t numel, uint32_t block_size) {
  if (numel == 0 || !is_u8_scheme(scheme)) return 0;
  if (scheme == Scheme::kPerTensorAbsmaxU8) return 1;
  if (block_size == 0) return 0;
  return (numel + block_size - 1) / block_size;
}

Status validate_block_size(Scheme scheme, uint32_t block_size) {
  if (!is_blockwise(scheme)) return Status::ok();
  if (block_size < kMinBlockSize || block_size > kMaxBlockSize ||
      (block_size & (block_size - 1)) != 0) {
    return invalid_argument_error(
        fmt::format("quant: block size {} is not a power of two in [64, 4096]", block_size));
  }
  return Status::ok();
}

namespace {

// What quantizing and dequantizing both require of an 8-bit layout: an 8-bit scheme, a block size
// it accepts, and a zero-point array when the scheme is affine and there is anything to code.
Status check_u8_layout(Scheme scheme, uint32_t block_size, const uint8_t* zero_points, uint64_t n) {
  if (!is_u8_scheme(scheme)) {
    return invalid_argument_error(
        fmt::format("quant: {} is not an 8-bit scheme", scheme_name(scheme)));
  }
  HIVEMIND_RETURN_IF_ERROR(validate_block_size(scheme, block_size));
  if (scheme == Scheme::kBlockAffineU8 && zero_points == nullptr && n > 0) {
    return invalid_argument_error("quant: the affine scheme needs a zero-point array");
  }
  return Status::ok();
}

}  // namespace

uint32_t placement_unit(Scheme scheme, uint32_t block_size) {
  return scheme == Scheme::kPerTensorAbsmaxU8 ? kPerTensorUnit : block_size;
}

Status quantize_cpu(const void* in, DType in_dtype, uint64_t n, Scheme scheme, uint32_t block_size,
                    float* scales, uint8_t* zero_points, uint8_t* codes,
                    const CpuOptions& options) {
  if (is_u8_scheme(scheme)) {
    HIVEMIND_RETURN_IF_ERROR(validate_block_size(scheme, block_size));
  }
  return quantize_cpu_placed(in, in_dtype, n, scheme, block_size, scales, zero_points, codes,
                             is_u8_scheme(scheme) ? placement_unit(scheme, block_size) : 0,
                             options);
}

Status quantize_cpu_placed(const void* in, DType in_dtype, uint64_t n, Scheme scheme,
                           uint32_t block_size, float* scales, uint8_t* zero_points, uint8_t* codes,
                           uint64_t unit_stride, const CpuOptions& options) {
  HIVEMIND_RETURN_IF_ERROR(check_float(in_dtype, "input"));
  HIVEMIND_RETURN_IF_ERROR(check_u8_layout(scheme, block_size, zero_points, n));
  if (n == 0) return Status::ok();
  const IsaKernels& k = kernels();
  const uint64_t blocks = num_blocks(scheme, n, block_size);
  const uint64_t unit = placement_unit(scheme, block_size);
  // Codes of element i go to codes + (i / unit) * unit_stride + i % unit: contiguous when the
  // stride is the unit, inside each unit's own input bytes for encode_in_place.
  auto unit_codes = [&](uint64_t start) { return codes + (start / unit) * unit_stride; };
  std::atomic<uint64_t> first_bad{UINT64_MAX};

  if (scheme == Scheme::kPerTensorAbsmaxU8) {
    // Pass 1: the integer max is order-free, so threads may combine partial maxima in any order.
    std::atomic<uint32_t> max_bits{0};
    for_chunks(n, unit, options, [&](uint64_t first, uint64_t count) {
      uint32_t m = k.max_abs_bits(offset_ptr(in, in_dtype, first), in_dtype, count);
      uint32_t cur = max_bits.load(std::memory_order_relaxed);
      while (m > cur && !max_bits.compare_exchange_weak(cur, m, std::memory_order_relaxed)) {
      }
    });
    spec::SymmetricParams p = spec::symmetric_params(max_bits.load());
    scales[0] = p.scale;
    for_chunks(n, unit, options, [&](uint64_t first, uint64_t count) {
      for (uint64_t off = 0; off < count; off += unit) {
        uint64_t start = first + off;
        uint64_t len = std::min<uint64_t>(unit, n - start);
        if (p.nonfinite) {
          std::memset(unit_codes(start), spec::kSymmetricOffset, len);
        } else {
          k.quantize_linear(offset_ptr(in, in_dtype, start), in_dtype, len, p.inv,
                            spec::kSymmetricOffset, unit_codes(start));
        }
      }
    });
    return p.nonfinite ? nonfinite_error(0, 1) : Status::ok();
  }

  const bool affine = scheme == Scheme::kBlockAffineU8;
  for_chunks(n, block_size, options, [&](uint64_t first, uint64_t count) {
    for (uint64_t off = 0; off < count; off += block_size) {
      uint64_t start = first + off;
      uint64_t len = std::min<uint64_t>(block_size, n - start);
      uint64_t b = start / block_size;
      const void* src = offset_ptr(in, in_dtype, start);
      float inv;
      int32_t offset;
      bool bad;
      if (affine) {
        detail::MinMaxKeys mm = k.minmax_keys(src, in_dtype, len);
        spec::AffineParams p = spec::affine_params(mm.min_key, mm.max_key);
        scales[b] = p.scale;
        zero_points[b] = p.zero_point;
        inv = p.inv;
        offset = p.zero_point;
        bad = p.nonfinite;
      } else {
        spec::SymmetricParams p = spec::symmetric_params(k.max_abs_bits(src, in_dtype, len));
        scales[b] = p.scale;
        inv = p.inv;
        offset = spec::kSymmetricOffset;
        bad = p.nonfinite;
      }
      if (bad) {
        std::memset(unit_codes(start), spec::kSymmetricOffset, len);
        note_nonfinite(first_bad, b);
      } else {
        k.quantize_linear(src, in_dtype, len, inv, offset, unit_codes(start));
      }
    }
  });
  uint64_t bad = first_bad.load();
  return bad == UINT64_MAX ? Status::ok() : nonfinite_error(bad, blocks);
}

namespace {

// Runs run(start, len, scale, offset) over the elements' runs of one scale and offset: the whole
// tensor in parallel chunks for the per-tensor scheme, each block otherwise. What decoding and
// decode-accumulating share; the layout was checked by the caller.
template <class Run>
void for_each_scaled_run(uint64_t n, Scheme scheme, uint32_t block_size, const float* scales,
                         const uint8_t* zero_points, const CpuOptions& options, Run&& run) {
  if (scheme == Scheme::kPerTensorAbsmaxU8) {
    for_chunks(n, 64, options, [&](uint64_t first, uint64_t count) {
      run(first, count, scales[0], spec::kSymmetricOffset);
    });
    return;
  }
  const bool affine = scheme == Scheme::kBlockAffineU8;
  for_chunks(n, block_size, options, [&](uint64_t first, uint64_t count) {
    for (uint64_t off = 0; off < count; off += block_size) {
      uint64_t start = first + off;
      uint64_t b = start / block_size;
      run(start, std::min<uint64_t>(block_size, n - start), scales[b],
          affine ? static_cast<int32_t>(zero_points[b]) : spec::kSymmetricOffset);
    }
  });
}

}  // namespace

Status dequantize_cpu(const uint8_t* codes, const float* scales, const uint8_t* zero_points,
                      uint64_t n, Scheme scheme, uint32_t block_size, void* out, DType out_dtype,
                      const CpuOptions& options) {
  HIVEMIND_RETURN_IF_ERROR(check_float(out_dtype, "output"));
  HIVEMIND_RETURN_IF_ERROR(check_u8_layout(scheme, block_size, zero_points, n));
  if (n == 0) return Status::ok();
  const IsaKernels& k = kernels();
  for_each_scaled_run(n, scheme, block_size, scales, zero_points, options,
                      [&](uint64_t start, uint64_t len, float scale, int32_t offset) {
                        k.dequantize_linear(codes + start, len, scale, offset,
                                            offset_ptr(out, out_dtype, start), out_dtype);
                      });
  return Status::ok();
}

Status dequantize_add_cpu(const uint8_t* codes, const float* scales, const uint8_t* zero_points,
                          uint64_t n, Scheme scheme, uint32_t block_size, const float* base,
                          float* out, float divisor, const CpuOptions& options) {
  HIVEMIND_RETURN_IF_ERROR(check_u8_layout(scheme, block_size, zero_points, n));
  if (n == 0) return Status::ok();
  const IsaKernels& k = kernels();
  for_each_scaled_run(n, scheme, block_size, scales, zero_points, options,
                      [&](uint64_t start, uint64_t len, float scale, int32_t offset) {
                        k.dequantize_add(codes + start, len, scale, offset, base + start,
                                         out + start, divisor);
                      });
  return Status::ok();
}

Status convert_cpu(const void* in, DType in_dtype, uint64_t n, void* out, DType out_dtype,
                   bool clamp_f16, const CpuOptions& options) {
  HIVEMIND_RETURN_IF_ERROR(check_float(in_dtype, "input"));
  HIVEMIND_RETURN_IF_ERROR(check_float(out_dtype, "output"));
  if (n == 0) return Status::ok();
  if (in_dtype == out_dtype && !clamp_f16) {
    for_chunks(n, 64, options, [&](uint64_t first, uint64_t count) {
      std::memcpy(offset_ptr(out, out_dtype, first), offset_ptr(in, in_dtype, first),
                  count * dtype_size(in_dtype));
    });
    return Status::ok();
  }
  const IsaKernels& k = kernels();
  for_chunks(n, 64, options, [&](uint64_t first, uint64_t count) {
    k.convert(offset_ptr(in, in_dtype, first), in_dtype, count, offset_ptr(out, out_dtype, first),
              out_dtype, clamp_f16);
  });
  return Status::ok();
}

}  // namespace hivemind::quant
