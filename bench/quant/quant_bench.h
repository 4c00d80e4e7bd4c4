// The GPU half of `hivemind-bench quant`, in its own file so builds without CUDA compile a stub.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "support/report.h"

namespace hivemind::bench {

struct QuantBenchOptions {
  uint64_t elements = uint64_t{32} << 20;
  int reps = 15;
  int threads = 0;  // 0: every hardware thread
  uint32_t block = 4096;
  std::string isa;  // empty: the best this CPU has
  bool cpu_only = false, gpu_only = false;
  std::vector<uint64_t> gpu_sizes_mib{64, 256, 1024};
  int gpu_reps = 20;

  void declare(CLI::App& cli);
};

// Returns 0; prints why it measured nothing when there is no device.
int run_quant_gpu_bench(const QuantBenchOptions& options, Reporter& reporter);

}  // namespace hivemind::bench
