// Helpers shared by the test suites.
#pragma once

#include <string>

namespace hivemind::testing {

// Number of usable CUDA devices: 0 in builds without CUDA or on machines without a GPU.
int cuda_device_count();

std::string cuda_unavailable_reason();

// Skips the current test with a printed reason unless a CUDA device is present. GPU tests carry the
// CTest label "gpu" and call this first.
#define HIVEMIND_REQUIRE_CUDA()                                                                \
  do {                                                                                         \
    if (::hivemind::testing::cuda_device_count() == 0) {                                       \
      GTEST_SKIP() << "no CUDA device on this machine ("                                       \
                   << ::hivemind::testing::cuda_unavailable_reason() << "): GPU test skipped"; \
    }                                                                                          \
  } while (false)

// The build directory (set by CTest), so tests can find build/bin programs.
std::string build_dir();
std::string program_path(const std::string& name);

}  // namespace hivemind::testing
