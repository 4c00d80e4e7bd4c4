// counters_of reads another process's CPU time and page faults from /proc; the throughput
// benchmark reports the server's cost of its timed window with it.
#include "support/process_cost.h"

#include <string>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

namespace hivemind::bench {
namespace {

TEST(ProcessCost, CountsThisProcessThroughProcAsItCountsItself) {
  // Fresh pages, kept out of transparent huge pages, fault once each on first touch.
  constexpr size_t kPages = 4096;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* region =
      ::mmap(nullptr, kPages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(region, MAP_FAILED);
  (void)::madvise(region, kPages * page, MADV_NOHUGEPAGE);
  const ProcessCounters before = counters_of_self();
  for (size_t i = 0; i < kPages; ++i)
    static_cast<volatile char*>(region)[i * page] = 1;
  auto through_proc = counters_of(::getpid());
  const ProcessCounters after = counters_of_self();
  ::munmap(region, kPages * page);
  ASSERT_TRUE(through_proc.is_ok()) << through_proc.status().to_string();
  EXPECT_GE(through_proc->minor_faults, before.minor_faults + static_cast<int64_t>(kPages));
  EXPECT_LE(through_proc->minor_faults, after.minor_faults);
  // /proc counts CPU in clock ticks, truncated: never more than the process's own clock.
  EXPECT_LE(through_proc->cpu_s, after.cpu_s);
  EXPECT_GE(through_proc->cpu_s, 0.0);
}

TEST(ProcessCost, AProcessThatIsGoneIsAnErrorNamingIt) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);  // reaped: its /proc entry is gone
  auto counters = counters_of(child);
  ASSERT_FALSE(counters.is_ok());
  EXPECT_NE(counters.status().message().find(std::to_string(child)), std::string::npos)
      << counters.status().to_string();
}

TEST(ProcessCost, CostBetweenTwoReadingsIsTheirDifference) {
  const Cost cost = cost_between({1.5, 100}, {2.25, 160}, 3.0);
  EXPECT_DOUBLE_EQ(cost.wall_s, 3.0);
  EXPECT_DOUBLE_EQ(cost.cpu_s, 0.75);
  EXPECT_EQ(cost.minor_faults, 60);
}

}  // namespace
}  // namespace hivemind::bench
