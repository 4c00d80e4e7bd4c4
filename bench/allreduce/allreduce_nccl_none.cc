// The allreduce benchmark's NCCL case in builds without NCCL: it says so and is skipped.
#include "allreduce_bench.h"

namespace hivemind::bench {

Result<NcclOneMemberTimes> measure_nccl_one_member(size_t, int, int) {
  return unsupported_error("built without NCCL");
}

}  // namespace hivemind::bench
