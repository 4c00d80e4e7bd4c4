// ExpertDirectory: the one DHT primitive beam search needs, batched.
//
// Servers declare expert "expert.3.7" as live under the prefix key "expert.3." with subkey 7
// (hivemind's layout), so one lookup of a prefix lists its live next coordinates, each with one
// live expert below it. The network layer implements this over the DHT (one DHT round per call);
// tests over an in-memory set.
#pragma once

#include <map>
#include <span>
#include <string>
#include <vector>

#include <hivemind/client/expert_caller.h>
#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>

namespace hivemind::client {

class ExpertDirectory {
 public:
  virtual ~ExpertDirectory() = default;

  // For each prefix (ending with '.', e.g. "expert.3."), the live next coordinates, each mapped to
  // one live expert whose uid starts with prefix + coordinate: for "expert.3." an entry 7 ->
  // {"expert.3.7.1", endpoint} says that some expert "expert.3.7.*" is live. When the prefix is one
  // coordinate short of a full uid, the expert is the uid prefix + coordinate itself. A flat
  // (one-dimensional) expert "expert.5" is listed under "expert.5." with coordinate -1, as hivemind
  // stores it. Unknown prefixes map to an empty map. The result has exactly one map per prefix, in
  // order. One round for the whole batch.
  virtual Result<std::vector<std::map<int, ExpertAddress>>> get_active_successors(
      std::span<const std::string> prefixes, Deadline deadline) = 0;
};

}  // namespace hivemind::client
