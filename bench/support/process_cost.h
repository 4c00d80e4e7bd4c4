// What a process costs over a span of a benchmark: CPU time of all its threads and minor page
// faults, next to the wall time.
//
// On a machine shared with other jobs a side's wall time depends on how much CPU the scheduler gave
// it; CPU time and page faults do not, so they show what a side itself adds even when the
// wall-time ratio is noise. Page faults matter on virtual machines, where a first touch of a page
// costs microseconds (shared-memory transports map every peer's segments and fault them in).
#pragma once

#include <chrono>
#include <cstdint>

#include <sys/types.h>

#include <hivemind/common/result.h>

namespace hivemind::bench {

// A process's counters at one instant.
struct ProcessCounters {
  double cpu_s = 0;  // user + system time of all its threads
  int64_t minor_faults = 0;
};

// This process's counters.
ProcessCounters counters_of_self();

// Another process's counters, read from /proc/<pid>/stat (CPU time in clock ticks: 10 ms on
// Linux's usual 100 Hz). An error names the pid when the file is gone or malformed.
Result<ProcessCounters> counters_of(pid_t pid);

struct Cost {
  double wall_s = 0;
  double cpu_s = 0;
  int64_t minor_faults = 0;
};

// The difference between two readings of one process `wall_s` apart.
inline Cost cost_between(const ProcessCounters& before, const ProcessCounters& after,
                         double wall_s) {
  return {wall_s, after.cpu_s - before.cpu_s, after.minor_faults - before.minor_faults};
}

// Measures this process from construction to stop().
class CostMeter {
 public:
  CostMeter() : wall_(std::chrono::steady_clock::now()), start_(counters_of_self()) {}
  Cost stop() const;

 private:
  std::chrono::steady_clock::time_point wall_;
  ProcessCounters start_;
};

}  // namespace hivemind::bench
