// The CUDA host API in builds without CUDA: every call says so.
#include <hivemind/quant/cuda_kernels.h>

namespace hivemind::quant::cuda {
namespace {
Status no_cuda() {
  return unsupported_error(
      "quant: this build has no CUDA kernels (HIVEMIND_WITH_CUDA off or no nvcc)");
}
}  // namespace

bool built_with_cuda() {
  return false;
}
int device_count() {
  return 0;
}

Status quantize(const void*, DType, uint64_t, Scheme, uint32_t, float*, uint8_t*, uint8_t*, void*,
                Stream) {
  return no_cuda();
}
Status finish_quantize(const void*, Scheme, uint64_t, uint32_t, Stream) {
  return no_cuda();
}
Status dequantize(const uint8_t*, const float*, const uint8_t*, uint64_t, Scheme, uint32_t, void*,
                  DType, Stream) {
  return no_cuda();
}
Status convert(const void*, DType, uint64_t, void*, DType, bool, Stream) {
  return no_cuda();
}

}  // namespace hivemind::quant::cuda
