#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hivemind/common/signals_for_exec.h>
#include <hivemind/harness/child_process.h>

extern char** environ;

namespace hivemind {

namespace {

int poll_timeout_ms(Deadline deadline) {
  if (deadline.is_never()) return -1;
  return static_cast<int>(std::min<int64_t>(deadline.remaining().count(), 1'000'000));
}

int exit_code_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// The environment the child gets: ours, with `overrides` replacing or adding entries.
std::vector<std::string> child_environment(
    const std::vector<std::pair<std::string, std::string>>& overrides) {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view e(*entry);
    bool replaced = std::any_of(overrides.begin(), overrides.end(), [&](const auto& kv) {
      return e.size() > kv.first.size() && e.substr(0, kv.first.size()) == kv.first &&
             e[kv.first.size()] == '=';
    });
    if (!replaced) env.emplace_back(e);
  }
  for (const auto& [key, value] : overrides)
    env.push_back(fmt::format("{}={}", key, value));
  return env;
}

}  // namespace

Result<ChildProcess> ChildProcess::spawn(ChildOptions options) {
  if (options.argv.empty()) return invalid_argument_error("child process: empty argv");
  const bool to_file =
      options.stdout_to == ChildOutput::kFile || options.stderr_to == ChildOutput::kFile;
  if (to_file && options.output_file.empty())
    return invalid_argument_error("child process: no output file");

  // Everything the child needs is prepared here: between fork and exec only async-signal-safe
  // calls.
  std::vector<std::string> env = child_environment(options.env);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (auto& e : env)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (auto& a : options.argv)
    argv.push_back(a.data());
  argv.push_back(nullptr);

  ChildProcess child;  // owns every descriptor below, so each error path closes them
  int in[2] = {-1, -1};
  int out[2][2] = {{-1, -1}, {-1, -1}};
  int file_fd = -1, null_fd = -1;
  auto close_child_ends = [&] {
    close_fd(in[0]);
    close_fd(out[0][1]);
    close_fd(out[1][1]);
    close_fd(file_fd);
    close_fd(null_fd);
  };
  auto fail = [&](std::string_view what, int err) {
    close_child_ends();
    return errno_error(fmt::format("child process {}: {}", options.argv[0], what), err);
  };
  if (options.pipe_stdin) {
    if (::pipe2(in, O_CLOEXEC) != 0) return fail("pipe", errno);
    child.stdin_fd_ = in[1];
  } else if ((null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
    return fail("open /dev/null", errno);
  }
  const ChildOutput targets[2] = {options.stdout_to, options.stderr_to};
  for (int s = 0; s < 2; ++s) {
    if (targets[s] != ChildOutput::kPipe) continue;
    if (::pipe2(out[s], O_CLOEXEC) != 0) return fail("pipe", errno);
    child.out_fd_[s] = out[s][0];
  }
  if (to_file) {
    file_fd = ::open(options.output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (file_fd < 0) return fail("open " + options.output_file, errno);
  }
  // The child reports a failed exec through this pipe; a successful exec closes it (CLOEXEC).
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return fail("pipe", errno);
  const pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    close_fd(report[0]);
    close_fd(report[1]);
    return fail("fork", errno);
  }
  if (pid == 0) {
    int err = 0;
    if (options.die_with_parent) {
      // Asked after fork: if the parent died in between, the signal would never come.
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(127);
    }
    restore_default_signals();
    int stdin_source = options.pipe_stdin ? in[0] : null_fd;
    if (::dup2(stdin_source, STDIN_FILENO) < 0) err = errno;
    for (int s = 0; s < 2 && err == 0; ++s) {
      int target = s == 0 ? STDOUT_FILENO : STDERR_FILENO;
      if (targets[s] == ChildOutput::kPipe && ::dup2(out[s][1], target) < 0) err = errno;
      if (targets[s] == ChildOutput::kFile && ::dup2(file_fd, target) < 0) err = errno;
    }
    if (err == 0) {
      ::execve(argv[0], argv.data(), envp.data());
      err = errno;
    }
    [[maybe_unused]] ssize_t n = ::write(report[1], &err, sizeof(err));
    ::_exit(127);
  }
  child.pid_ = pid;
  close_child_ends();
  close_fd(report[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(report[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  close_fd(report[0]);
  if (n == sizeof(child_errno)) {
    ::waitpid(pid, nullptr, 0);
    child.pid_ = -1;
    return errno_error(fmt::format("child process: cannot start {}", options.argv[0]), child_errno);
  }
  // Where the kernel has no pidfd_open (before Linux 5.3), wait() polls instead.
  child.pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  return child;
}

Result<ChildProcess> ChildProcess::spawn(std::vector<std::string> argv) {
  ChildOptions options;
  options.argv = std::move(argv);
  return spawn(std::move(options));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept {
  *this = std::move(other);
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  std::swap(pid_, other.pid_);
  std::swap(pidfd_, other.pidfd_);
  std::swap(stdin_fd_, other.stdin_fd_);
  std::swap(out_fd_, other.out_fd_);
  std::swap(buffer_, other.buffer_);
  return *this;
}

ChildProcess::~ChildProcess() {
  reset();
}

void ChildProcess::reset() {
  if (pid_ > 0) {
    ::kill(pid_, SIGCONT);  // a stopped child would otherwise hold the SIGKILL until resumed
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  close_fd(pidfd_);
  close_fd(stdin_fd_);
  close_fd(out_fd_[0]);
  close_fd(out_fd_[1]);
}

bool ChildProcess::pump(Deadline deadline, bool for_exit) {
  while (true) {
    pollfd fds[3];
    nfds_t count = 0;
    for (int fd : out_fd_) {
      if (fd >= 0) fds[count++] = pollfd{fd, POLLIN, 0};
    }
    const bool watch_exit = for_exit && pidfd_ >= 0;
    if (watch_exit) fds[count++] = pollfd{pidfd_, POLLIN, 0};
    int timeout = poll_timeout_ms(deadline);
    if (for_exit && pidfd_ < 0)
      timeout = std::min(timeout < 0 ? 10 : timeout, 10);  // polled exit: 10 ms steps
    if (count == 0) {
      if (timeout != 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(timeout < 0 ? 10 : timeout));
      return !deadline.expired();
    }
    int ready = ::poll(fds, count, timeout);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return !deadline.expired();
    for (nfds_t i = 0; i < count; ++i) {
      if (fds[i].revents == 0 || (watch_exit && fds[i].fd == pidfd_)) continue;
      const int s = fds[i].fd == out_fd_[0] ? 0 : 1;
      char chunk[4096];
      ssize_t n = ::read(out_fd_[s], chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        close_fd(out_fd_[s]);
      else
        buffer_[s].append(chunk, static_cast<size_t>(n));
    }
    return true;
  }
}

Result<std::string> ChildProcess::read_line(Deadline deadline, ChildStream stream) {
  const auto s = static_cast<size_t>(stream);
  while (true) {
    if (auto nl = buffer_[s].find('\n'); nl != std::string::npos) {
      std::string line = buffer_[s].substr(0, nl);
      buffer_[s].erase(0, nl + 1);
      return line;
    }
    if (out_fd_[s] < 0) {
      if (!buffer_[s].empty())
        return std::exchange(buffer_[s], std::string());  // a last unterminated line
      return unavailable_error(fmt::format("process {}: that stream is closed or not piped", pid_));
    }
    if (!pump(deadline, false))
      return timeout_error(fmt::format("no line from process {} in time", pid_));
  }
}

Result<std::string> ChildProcess::read_line_containing(std::string_view text, Deadline deadline,
                                                       ChildStream stream) {
  while (true) {
    HIVEMIND_ASSIGN_OR_RETURN(std::string line, read_line(deadline, stream));
    if (line.find(text) != std::string::npos) return line;
  }
}

Status ChildProcess::write(std::string_view bytes) {
  if (stdin_fd_ < 0)
    return unavailable_error(fmt::format("process {}: stdin is closed or not piped", pid_));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(stdin_fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(fmt::format("write to process {}", pid_), errno);
    done += static_cast<size_t>(n);
  }
  return Status::ok();
}

void ChildProcess::close_stdin() {
  close_fd(stdin_fd_);
}

void ChildProcess::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

bool ChildProcess::reap_if_exited(int* code) {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r != pid_) return false;
  *code = exit_code_of(status);
  pid_ = -1;
  close_fd(pidfd_);
  return true;
}

Result<int> ChildProcess::wait(Deadline deadline) {
  if (pid_ <= 0) return invalid_argument_error("no child process to wait for");
  while (true) {
    int code = 0;
    if (reap_if_exited(&code)) return code;
    if (!pump(deadline, true)) return timeout_error(fmt::format("process {} still running", pid_));
  }
}

}  // namespace hivemind
