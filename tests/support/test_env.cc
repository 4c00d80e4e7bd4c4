#include "test_env.h"

#include <cstdlib>

#ifdef HIVEMIND_TEST_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace hivemind::testing {

int cuda_device_count() {
#ifdef HIVEMIND_TEST_HAVE_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
#else
  return 0;
#endif
}

std::string cuda_unavailable_reason() {
#ifdef HIVEMIND_TEST_HAVE_CUDA
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  return count == 0 ? "the CUDA runtime reports no device" : "a device is present";
#else
  return "this build has no CUDA support";
#endif
}

std::string build_dir() {
  const char* dir = std::getenv("HIVEMIND_BUILD_DIR");
  return dir != nullptr ? dir : HIVEMIND_DEFAULT_BUILD_DIR;
}

std::string program_path(const std::string& name) {
  return build_dir() + "/bin/" + name;
}

}  // namespace hivemind::testing
