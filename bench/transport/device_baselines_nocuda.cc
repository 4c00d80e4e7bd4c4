// The device baselines in a build without CUDA: nothing to measure, and each call says why.
#include "transport/device_baselines.h"

namespace hivemind::bench::device_baselines {
namespace {
constexpr const char* kNoCuda = "this build has no CUDA (HIVEMIND_WITH_CUDA off or no nvcc)";
}

std::optional<double> pinned_round_trip_us(size_t, int, std::string* why) {
  if (why) *why = kNoCuda;
  return std::nullopt;
}

std::optional<std::vector<uint8_t>> raw_ipc_handle(void*, std::string* why) {
  if (why) *why = kNoCuda;
  return std::nullopt;
}

std::optional<double> raw_ipc_copy_us(std::span<const uint8_t>, void*, size_t, int,
                                      std::string* why) {
  if (why) *why = kNoCuda;
  return std::nullopt;
}

}  // namespace hivemind::bench::device_baselines
