// The GPU half of `hivemind-bench quant`, in its own file so builds without CUDA compile a stub.
#pragma once

#include "support/report.h"

namespace hivemind::bench {
// Returns 0; prints why it measured nothing when there is no device.
int run_quant_gpu_bench(const Args& args, Reporter& reporter);
}  // namespace hivemind::bench
