#include "support/process_cost.h"

#include <cerrno>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include <fmt/core.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <hivemind/common/errno_text.h>

namespace hivemind::bench {

ProcessCounters counters_of_self() {
  ProcessCounters c;
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  c.cpu_s = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  c.minor_faults = usage.ru_minflt;
  return c;
}

Result<ProcessCounters> counters_of(pid_t pid) {
  const std::string path = fmt::format("/proc/{}/stat", pid);
  std::ifstream in(path);
  if (!in) return not_found_error(fmt::format("{}: {}", path, errno_text(errno)));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the fields start after
  // the last ')'. From there, minflt is the 8th field and utime, stime the 12th and 13th.
  const size_t comm_end = stat.rfind(')');
  if (comm_end == std::string::npos)
    return protocol_error(fmt::format("{}: no ')' after the command name", path));
  std::istringstream fields(stat.substr(comm_end + 1));
  std::string field;
  int64_t minflt = -1;
  int64_t utime = -1;
  int64_t stime = -1;
  for (int i = 1; i <= 13 && fields >> field; ++i) {
    try {
      if (i == 8) minflt = std::stoll(field);
      if (i == 12) utime = std::stoll(field);
      if (i == 13) stime = std::stoll(field);
    } catch (const std::exception&) {
      return protocol_error(fmt::format("{}: field {} is not a number: '{}'", path, i + 2, field));
    }
  }
  if (minflt < 0 || utime < 0 || stime < 0)
    return protocol_error(fmt::format("{}: fewer fields than expected", path));
  const double tick_s = 1.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
  return ProcessCounters{static_cast<double>(utime + stime) * tick_s, minflt};
}

Cost CostMeter::stop() const {
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_).count();
  return cost_between(start_, counters_of_self(), wall);
}

}  // namespace hivemind::bench
