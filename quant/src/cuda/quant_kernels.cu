// Launchers (grid sizing, template instance per dtype and block size) and the host API of
// cuda_kernels.h (argument validation, workspace initialization, error reporting).
#include <algorithm>
#include <string>

#include <cuda_runtime.h>

#include <hivemind/quant/cpu_kernels.h>
#include <hivemind/quant/cuda_kernels.h>

#include "kernels.cuh"

namespace hivemind::quant::cuda {
namespace {

using kernel::BF16;
using kernel::F16;
using kernel::F32;
using kernel::kThreads;

// Workspace layout: u64 lowest non-finite block (UINT64_MAX: none), u32 per-tensor max bits, u32
// pad.
struct Workspace {
  unsigned long long first_bad;
  uint32_t max_bits;
  uint32_t pad;
};
static_assert(sizeof(Workspace) == kWorkspaceBytes);

Status cuda_error(cudaError_t err, const char* what) {
  return internal_error(std::string("quant cuda: ") + what + ": " + cudaGetErrorString(err));
}

Status launched(const char* what) {
  cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? Status::ok() : cuda_error(err, what);
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}
bool aligned8(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 8 == 0;
}

// Grid-stride kernels: enough CTAs to fill the device several times, capped by the work.
unsigned grid_for(uint64_t work_items_per_thread_step) {
  static const unsigned max_ctas = [] {
    int device = 0, sms = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    return static_cast<unsigned>(std::max(sms, 1)) * 64u;
  }();
  uint64_t ctas = (work_items_per_thread_step + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<uint64_t>(ctas, 1, max_ctas));
}

// ---- launchers ----
template <typename T, bool kAffine>
Status launch_blocks(const void* in, uint64_t n, uint32_t block_size, float* scales, uint8_t* zps,
                     uint8_t* codes, Workspace* ws, cudaStream_t stream) {
  using S = typename T::Storage;
  const uint64_t n_blocks = (n + block_size - 1) / block_size;
  const bool aligned = aligned16(in) && aligned8(codes);
  auto go = [&](auto group_tag) {
    constexpr int G = decltype(group_tag)::value;
    constexpr int kGroups = kThreads / G;
    uint64_t tiles = (n_blocks + kGroups - 1) / kGroups;
    unsigned grid = static_cast<unsigned>(std::min<uint64_t>(tiles, 1u << 30));
    kernel::quantize_blocks<T, G, kAffine><<<grid, kThreads, 0, stream>>>(
        static_cast<const S*>(in), n, n_blocks, aligned, scales, zps, codes, &ws->first_bad);
    return launched("quantize_blocks");
  };
  switch (block_size) {  // G = block_size / 16 threads per block
    case 64:
      return go(std::integral_constant<int, 4>{});
    case 128:
      return go(std::integral_constant<int, 8>{});
    case 256:
      return go(std::integral_constant<int, 16>{});
    case 512:
      return go(std::integral_constant<int, 32>{});
    case 1024:
      return go(std::integral_constant<int, 64>{});
    case 2048:
      return go(std::integral_constant<int, 128>{});
    case 4096:
      return go(std::integral_constant<int, 256>{});
    default:
      return invalid_argument_error("quant cuda: unsupported block size");
  }
}

template <typename T>
Status launch_per_tensor(const void* in, uint64_t n, float* scale, uint8_t* codes, Workspace* ws,
                         cudaStream_t stream) {
  using S = typename T::Storage;
  constexpr int kVec = kernel::Vec<T>::kElems;
  const bool aligned = aligned16(in) && aligned8(codes);
  unsigned grid = grid_for((n + kVec - 1) / kVec);
  kernel::tensor_max_abs<T>
      <<<grid, kThreads, 0, stream>>>(static_cast<const S*>(in), n, aligned, &ws->max_bits);
  HIVEMIND_RETURN_IF_ERROR(launched("tensor_max_abs"));
  kernel::tensor_quantize<T><<<grid, kThreads, 0, stream>>>(
      static_cast<const S*>(in), n, aligned, &ws->max_bits, scale, codes, &ws->first_bad);
  return launched("tensor_quantize");
}

template <typename T>
Status quantize_typed(const void* in, uint64_t n, Scheme scheme, uint32_t block_size, float* scales,
                      uint8_t* zps, uint8_t* codes, Workspace* ws, cudaStream_t stream) {
  switch (scheme) {
    case Scheme::kBlockAbsmaxU8:
      return launch_blocks<T, false>(in, n, block_size, scales, zps, codes, ws, stream);
    case Scheme::kBlockAffineU8:
      return launch_blocks<T, true>(in, n, block_size, scales, zps, codes, ws, stream);
    default:
      return launch_per_tensor<T>(in, n, scales, codes, ws, stream);
  }
}

template <typename O>
Status dequantize_typed(const uint8_t* codes, const float* scales, const uint8_t* zps, uint64_t n,
                        Scheme scheme, uint32_t block_size, void* out, cudaStream_t stream) {
  using S = typename O::Storage;
  const int shift = scheme == Scheme::kPerTensorAbsmaxU8 ? 63 : __builtin_ctz(block_size);
  const bool aligned = aligned16(codes) && aligned16(out);
  unsigned grid = grid_for((n + 15) / 16);
  if (scheme == Scheme::kBlockAffineU8) {
    kernel::dequantize<O, true><<<grid, kThreads, 0, stream>>>(codes, scales, zps, n, shift,
                                                               aligned, static_cast<S*>(out));
  } else {
    kernel::dequantize<O, false><<<grid, kThreads, 0, stream>>>(codes, scales, zps, n, shift,
                                                                aligned, static_cast<S*>(out));
  }
  return launched("dequantize");
}

template <typename I>
Status convert_from(const void* in, uint64_t n, void* out, DType out_dtype, bool clamp,
                    cudaStream_t stream) {
  unsigned grid = grid_for(n);
  const auto* src = static_cast<const typename I::Storage*>(in);
  switch (out_dtype) {
    case DType::kFloat32:
      kernel::convert<I, F32>
          <<<grid, kThreads, 0, stream>>>(src, n, clamp, static_cast<float*>(out));
      break;
    case DType::kFloat16:
      kernel::convert<I, F16>
          <<<grid, kThreads, 0, stream>>>(src, n, clamp, static_cast<uint16_t*>(out));
      break;
    default:
      kernel::convert<I, BF16>
          <<<grid, kThreads, 0, stream>>>(src, n, clamp, static_cast<uint16_t*>(out));
      break;
  }
  return launched("convert");
}

Status check_common(Scheme scheme, uint32_t block_size, DType dtype, const char* what) {
  if (!is_floating(dtype))
    return invalid_argument_error(std::string("quant cuda: ") + what + " must be a float type");
  if (!is_u8_scheme(scheme)) return invalid_argument_error("quant cuda: not an 8-bit scheme");
  return validate_block_size(scheme, block_size);
}

}  // namespace

bool built_with_cuda() {
  return true;
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error for later callers
    return 0;
  }
  return count;
}

Status quantize(const void* in, DType in_dtype, uint64_t n, Scheme scheme, uint32_t block_size,
                float* scales, uint8_t* zero_points, uint8_t* codes, void* workspace,
                Stream stream) {
  HIVEMIND_RETURN_IF_ERROR(check_common(scheme, block_size, in_dtype, "input"));
  if (workspace == nullptr) return invalid_argument_error("quant cuda: a workspace is required");
  if (scheme == Scheme::kBlockAffineU8 && zero_points == nullptr && n > 0) {
    return invalid_argument_error("quant cuda: the affine scheme needs zero-points");
  }
  auto* ws = static_cast<Workspace*>(workspace);
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  // first_bad = UINT64_MAX (all 0xff bytes), max_bits = 0, pad = 0.
  cudaError_t err = cudaMemsetAsync(&ws->first_bad, 0xff, sizeof ws->first_bad, s);
  if (err == cudaSuccess) err = cudaMemsetAsync(&ws->max_bits, 0, 2 * sizeof(uint32_t), s);
  if (err != cudaSuccess) return cuda_error(err, "workspace init");
  if (n == 0) return Status::ok();
  switch (in_dtype) {
    case DType::kFloat32:
      return quantize_typed<F32>(in, n, scheme, block_size, scales, zero_points, codes, ws, s);
    case DType::kFloat16:
      return quantize_typed<F16>(in, n, scheme, block_size, scales, zero_points, codes, ws, s);
    default:
      return quantize_typed<BF16>(in, n, scheme, block_size, scales, zero_points, codes, ws, s);
  }
}

Status finish_quantize(const void* workspace, Scheme scheme, uint64_t n, uint32_t block_size,
                       Stream stream) {
  Workspace host{};
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  cudaError_t err = cudaMemcpyAsync(&host, workspace, sizeof host, cudaMemcpyDeviceToHost, s);
  if (err == cudaSuccess) err = cudaStreamSynchronize(s);
  if (err != cudaSuccess) return cuda_error(err, "finish_quantize");
  if (host.first_bad == ~0ull) return Status::ok();
  return invalid_argument_error(
      "quant: block " + std::to_string(host.first_bad) + " of " +
      std::to_string(num_blocks(scheme, n, block_size)) +
      " holds Inf or NaN (or an affine range beyond float32): the 8-bit schemes "
      "reject non-finite tensors (numeric_spec.h, section 4)");
}

Status dequantize(const uint8_t* codes, const float* scales, const uint8_t* zero_points, uint64_t n,
                  Scheme scheme, uint32_t block_size, void* out, DType out_dtype, Stream stream) {
  HIVEMIND_RETURN_IF_ERROR(check_common(scheme, block_size, out_dtype, "output"));
  if (scheme == Scheme::kBlockAffineU8 && zero_points == nullptr && n > 0) {
    return invalid_argument_error("quant cuda: the affine scheme needs zero-points");
  }
  if (n == 0) return Status::ok();
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  switch (out_dtype) {
    case DType::kFloat32:
      return dequantize_typed<F32>(codes, scales, zero_points, n, scheme, block_size, out, s);
    case DType::kFloat16:
      return dequantize_typed<F16>(codes, scales, zero_points, n, scheme, block_size, out, s);
    default:
      return dequantize_typed<BF16>(codes, scales, zero_points, n, scheme, block_size, out, s);
  }
}

Status convert(const void* in, DType in_dtype, uint64_t n, void* out, DType out_dtype,
               bool clamp_f16, Stream stream) {
  if (!is_floating(in_dtype) || !is_floating(out_dtype)) {
    return invalid_argument_error("quant cuda: convert needs float types");
  }
  if (n == 0) return Status::ok();
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  switch (in_dtype) {
    case DType::kFloat32:
      return convert_from<F32>(in, n, out, out_dtype, clamp_f16, s);
    case DType::kFloat16:
      return convert_from<F16>(in, n, out, out_dtype, clamp_f16, s);
    default:
      return convert_from<BF16>(in, n, out, out_dtype, clamp_f16, s);
  }
}

}  // namespace hivemind::quant::cuda
