// RoundReport: what one averaging round did, returned by Averager::step() and logged.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <hivemind/common/clock.h>

namespace hivemind::averaging {

struct RoundReport {
  uint64_t round = 0;
  // True when every tensor now holds the group's mean. False: the tensors hold exactly what they
  // held before the round (a failed round never leaves a partial mean behind), and `failure` says
  // why ("member tcp://... did not send its part before the deadline", "nccl: ...").
  bool ok = false;
  std::string backend;               // the backend that ran (or failed), "" when no group formed
  std::vector<std::string> members;  // endpoints, leader first; a group of one is a no-op round
  uint64_t bytes_sent = 0;           // payload bytes this member put on the wire
  uint64_t bytes_received = 0;
  Milliseconds elapsed{0};  // from step() to the result
  std::string failure;
  // Backends tried before `backend` in this step and why each failed (an NCCL round that failed
  // and was retried over the transport).
  std::vector<std::string> fallbacks;
};

}  // namespace hivemind::averaging
