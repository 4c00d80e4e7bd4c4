// ChildProcess: one program started by this process, its output read line by line with deadlines.
//
// For tests and benchmarks that drive real binaries (servers, DHT nodes): every wait has a
// deadline, and a child never outlives its parent by accident. Part of the harness library
// (harness/), which tests and hivemind-bench link and which is never installed. By default the
// child gets SIGKILL when the thread that spawned it ends (Linux's parent-death signal follows the
// spawning thread, so spawn from a thread that lives as long as the child should), and the
// destructor kills and reaps a child that is still running. Launching ranks is spawn.h's job, not
// this one's.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>

namespace hivemind {

// Where one of the child's output streams goes.
enum class ChildOutput {
  kPipe,     // to this process, read with read_line
  kInherit,  // to this process's own stream (logs stay visible)
  kFile,     // to ChildOptions::output_file
};

enum class ChildStream { kStdout = 0, kStderr = 1 };

struct ChildOptions {
  std::vector<std::string> argv;  // argv[0] is the program's path
  // Set in the child, over the environment it inherits.
  std::vector<std::pair<std::string, std::string>> env;
  ChildOutput stdout_to = ChildOutput::kPipe;
  ChildOutput stderr_to = ChildOutput::kInherit;
  std::string output_file;  // created or truncated; both streams share it when both go there
  // stdin is a pipe from this process: the child sees end-of-file when close_stdin() is called or
  // this process ends. Otherwise it reads /dev/null.
  bool pipe_stdin = true;
  bool die_with_parent = true;  // SIGKILL when the spawning thread ends
};

class ChildProcess {
 public:
  static Result<ChildProcess> spawn(ChildOptions options);
  // With the default options: stdin and stdout piped, stderr inherited, killed with its thread.
  static Result<ChildProcess> spawn(std::vector<std::string> argv);

  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();  // a child still running is resumed, SIGKILLed and reaped

  // The next line (without '\n') of a piped stream. Timeout at the deadline; Unavailable once the
  // child closed that stream and every line was read. Reads the other piped stream meanwhile, so a
  // child blocked on a full pipe never stalls the wait.
  Result<std::string> read_line(Deadline deadline, ChildStream stream = ChildStream::kStdout);
  // The next line that contains `text`, skipping the others.
  Result<std::string> read_line_containing(std::string_view text, Deadline deadline,
                                           ChildStream stream = ChildStream::kStdout);
  Status write(std::string_view bytes);
  void close_stdin();
  void signal(int sig);
  // Waits for the exit, draining the piped streams meanwhile: the exit code, or 128 + N when signal
  // N ended it. Timeout at the deadline (the child keeps running).
  Result<int> wait(Deadline deadline);
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

 private:
  void reset();
  // Waits until something arrives on a piped stream (appended to its buffer), the child exits (when
  // `for_exit`), or the deadline; false at the deadline.
  bool pump(Deadline deadline, bool for_exit);
  bool reap_if_exited(int* code);

  pid_t pid_ = -1;
  int pidfd_ = -1;  // readable once the child has exited; -1 where the kernel has no pidfd_open
  int stdin_fd_ = -1;
  std::array<int, 2> out_fd_{-1, -1};
  std::array<std::string, 2> buffer_;
};

}  // namespace hivemind
