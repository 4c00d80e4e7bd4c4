// What an expert layer knows of its experts' outputs when its options name no output shape: per
// output, the per-sample shape and the dtype the experts declare. hivemind's layers read them from
// the `outputs_schema` of an expert's `info`; so do these, once per layer. Private to the module.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include <hivemind/client/expert_caller.h>
#include <hivemind/common/clock.h>
#include <hivemind/protocol/expert_rpc.h>

namespace hivemind::client::detail {

using OutputSchemas = std::vector<protocol::TensorSchema>;  // one per output

class LearnedOutputSchemas {
 public:
  // The schemas for a call to `experts`: the ones learned by an earlier call, else the
  // outputs_schema of the first of them whose `info` arrives by `deadline`, kept for the layer's
  // later calls. Every one of them is asked at once: a frozen expert does not hold up the others,
  // and the call that follows needs their descriptions anyway (the network caller caches them).
  // nullopt when none could describe itself (a caller without `info`, or experts that all failed);
  // the call then assumes one floating output of the first input's per-sample shape, and the next
  // call asks again.
  std::optional<OutputSchemas> resolve(const std::vector<ExpertAddress>& experts,
                                       ExpertCaller& caller, Deadline deadline);

  // What was learned so far (nullopt before the first successful resolve).
  std::optional<OutputSchemas> known() const;
  // The per-sample shapes of known(), for the layers' output_shapes().
  std::optional<std::vector<std::vector<int64_t>>> known_shapes() const;

 private:
  mutable std::mutex mutex_;
  std::optional<OutputSchemas> schemas_;
};

}  // namespace hivemind::client::detail
