// Raw CUDA baselines for the transport benchmark's device-tensor cases, written against the CUDA
// runtime directly (nothing of the transport): the pinned copies a staged send cannot avoid, and a
// CUDA IPC copy between two processes. A build without CUDA compiles the variant that reports why
// nothing was measured (device_baselines_nocuda.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace hivemind::bench::device_baselines {

// Median microseconds of a cudaMemcpy device -> pinned host plus one pinned host -> device of
// `bytes` (device 0, after 2 warm-ups): the two copies every staged send of a device tensor makes.
std::optional<double> pinned_round_trip_us(size_t bytes, int reps, std::string* why);

// The cudaIpcMemHandle_t of the allocation starting at `device_ptr`, as bytes.
std::optional<std::vector<uint8_t>> raw_ipc_handle(void* device_ptr, std::string* why);

// In the receiving process: opens `handle` with cudaIpcOpenMemHandle once, then the median
// microseconds of a cudaMemcpy device -> device of `bytes` from the peer's memory into `device_dst`
// (after 2 warm-ups); closes the mapping.
std::optional<double> raw_ipc_copy_us(std::span<const uint8_t> handle, void* device_dst,
                                      size_t bytes, int reps, std::string* why);

}  // namespace hivemind::bench::device_baselines
