// What the allreduce benchmark's NCCL case shares with the rest of it (allreduce_nccl.cc in builds
// with NCCL, allreduce_nccl_none.cc elsewhere).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <hivemind/common/result.h>

namespace hivemind::bench {

struct NcclOneMemberTimes {
  std::string device;                 // "NVIDIA H100 80GB HBM3 (GPU-...)"
  std::vector<double> round_seconds;  // NcclBackend::all_reduce_mean of a group of one
  std::vector<double> copy_seconds;   // the baseline: one device-to-device copy of the same bytes
};

// One process, one GPU: `iterations` one-member NCCL rounds over `bytes` of float32 on device 0
// after `warmup` ones (the first creates the communicator), each timed to its return. An
// Unsupported or Unavailable error says why the case cannot run here (no NCCL, no GPU).
Result<NcclOneMemberTimes> measure_nccl_one_member(size_t bytes, int warmup, int iterations);

}  // namespace hivemind::bench
