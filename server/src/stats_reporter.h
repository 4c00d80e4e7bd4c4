// The server's periodic stats line (--stats_report_interval): per expert with traffic, requests,
// samples/s, mean batch and queue depth of each method since the last report; then the totals.
#pragma once

#include <map>
#include <string>
#include <utility>

#include <hivemind/common/clock.h>
#include <hivemind/runtime/task_pool.h>

#include "hosted_experts.h"

namespace hivemind::server {

class StatsReporter {
 public:
  // The first interval starts at `now` (the server's start).
  void start(SteadyTime now) { last_report_at_ = now; }
  // Logs what happened since the previous report (or start()). Maintenance thread only.
  void report(const HostedExperts& experts);

 private:
  SteadyTime last_report_at_{};
  // Per uid, the forward and backward pool counters at the previous report.
  std::map<std::string, std::pair<runtime::TaskPoolStats, runtime::TaskPoolStats>> last_;
};

}  // namespace hivemind::server
