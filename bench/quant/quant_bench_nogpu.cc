#include "quant/quant_bench.h"

namespace hivemind::bench {
int run_quant_gpu_bench(const QuantBenchOptions&, Reporter& reporter) {
  reporter.note("quant gpu: skipped: this build has no CUDA (HIVEMIND_WITH_CUDA off or no nvcc)");
  return 0;
}
}  // namespace hivemind::bench
