#include "stats_reporter.h"

#include <algorithm>
#include <chrono>
#include <cstdint>

#include <hivemind/common/logging.h>

namespace hivemind::server {

void StatsReporter::report(const HostedExperts& experts) {
  const SteadyTime now = SteadyClock::now();
  const double elapsed =
      std::max(1e-9, std::chrono::duration<double>(now - last_report_at_).count());
  last_report_at_ = now;
  uint64_t total_requests = 0;
  uint64_t total_samples = 0;
  for (const auto& [uid, e] : experts.all()) {
    const runtime::TaskPoolStats f = e.forward->stats();
    const runtime::TaskPoolStats b = e.backward->stats();
    auto& [lf, lb] = last_[uid];
    const uint64_t req_f = f.tasks_submitted - lf.tasks_submitted,
                   req_b = b.tasks_submitted - lb.tasks_submitted;
    const uint64_t smp_f = f.samples - lf.samples, smp_b = b.samples - lb.samples;
    const uint64_t bat_f = f.batches - lf.batches, bat_b = b.batches - lb.batches;
    lf = f;
    lb = b;
    total_requests += req_f + req_b;
    total_samples += smp_f + smp_b;
    if (req_f + req_b == 0 && f.queued_tasks + b.queued_tasks == 0) continue;
    logger("server")->info(
        "stats {}: forward {} req, {:.1f} samples/s, mean batch {:.1f}, queue {} | backward {} "
        "req, "
        "{:.1f} samples/s, mean batch {:.1f}, queue {}",
        uid, req_f, static_cast<double>(smp_f) / elapsed,
        bat_f ? static_cast<double>(smp_f) / static_cast<double>(bat_f) : 0.0, f.queued_tasks,
        req_b, static_cast<double>(smp_b) / elapsed,
        bat_b ? static_cast<double>(smp_b) / static_cast<double>(bat_b) : 0.0, b.queued_tasks);
  }
  logger("server")->info(
      "stats: {} expert(s), {} request(s), {:.1f} samples/s over the last {:.0f} s",
      experts.all().size(), total_requests, static_cast<double>(total_samples) / elapsed, elapsed);
}

}  // namespace hivemind::server
