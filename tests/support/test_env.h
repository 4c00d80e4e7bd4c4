// Helpers shared by the test suites.
#pragma once

#include <exception>
#include <string>

#include <gtest/gtest.h>

namespace hivemind::testing {

// Runs `f`, expecting it to throw an exception whose message contains `needle`; anything else fails
// the current test.
template <typename F>
void expect_throws_with(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

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
