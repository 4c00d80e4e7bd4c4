// A child process with its stdin and stdout piped to the parent, for the throughput benchmark's server
// and client processes. Line-oriented: the children announce "ready ..." / "done ..." on stdout.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include <hivemind/common/result.h>

namespace hivemind::bench {

class ChildProcess {
 public:
  // Starts argv[0] (a path) with the parent's environment; stderr is inherited so its logs stay visible.
  static Result<ChildProcess> spawn(const std::vector<std::string>& argv);

  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();  // SIGKILLs and reaps a child still running (error paths only)

  // The next line of the child's stdout (without '\n'), waiting at most until `deadline`.
  // kTimeout on timeout, Unavailable when the child closed its stdout.
  Result<std::string> read_line(std::chrono::steady_clock::time_point deadline);
  Status write(const std::string& bytes);
  void close_stdin();
  void signal(int sig);
  // Waits for the exit until `deadline`; the exit status (128+N for signal N), or kTimeout.
  Result<int> wait(std::chrono::steady_clock::time_point deadline);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  std::string buffer_;
};

}  // namespace hivemind::bench
