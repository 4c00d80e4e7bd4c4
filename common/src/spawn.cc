#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hivemind/common/env.h>
#include <hivemind/common/logging.h>
#include <hivemind/common/signals_for_exec.h>
#include <hivemind/common/spawn.h>

extern char** environ;

namespace hivemind {
namespace {

constexpr const char* kRankVariables[] = {"HIVEMIND_RANK", "HIVEMIND_WORLD_SIZE",
                                          "HIVEMIND_LOCAL_RANK", "HIVEMIND_NODE_RANK"};

// Looks `program` up in PATH the way execvp would, but in the parent: between fork and exec only
// async-signal-safe calls are allowed, and PATH parsing allocates.
Result<std::string> resolve_program(const std::string& program) {
  if (program.empty()) return invalid_argument_error("spawn: no program given");
  if (program.find('/') != std::string::npos) return program;
  std::string path = env_string("PATH").value_or("/usr/local/bin:/usr/bin:/bin");
  size_t start = 0;
  while (start <= path.size()) {
    size_t colon = path.find(':', start);
    std::string dir =
        path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return not_found_error(fmt::format("spawn: '{}' not found in PATH", program));
}

std::string signal_name(int signal) {
  // sigdescr_np reads a constant table; strsignal may format into a buffer shared by all threads.
  const char* description = ::sigdescr_np(signal);
  return description ? description : "unknown";
}

}  // namespace

std::string RankExit::describe() const {
  if (term_signal != 0) {
    return fmt::format("rank {} (pid {}) killed by signal {} ({}){}", rank, pid, term_signal,
                       signal_name(term_signal),
                       stopped_by_launcher ? " sent by the launcher" : "");
  }
  if (exit_code < 0) return fmt::format("rank {} (pid {}) did not finish", rank, pid);
  return fmt::format("rank {} (pid {}) exited with code {}", rank, pid, exit_code);
}

int SpawnReport::exit_code() const {
  if (timed_out) return 124;
  if (first_failed) {
    const RankExit& failed = ranks[static_cast<size_t>(*first_failed)];
    return failed.term_signal != 0 ? 128 + failed.term_signal : failed.exit_code;
  }
  return status.is_ok() ? 0 : 1;
}

Result<std::unique_ptr<SpawnedGroup>> SpawnedGroup::start(const SpawnOptions& options) {
  if (options.world_size < 1) return invalid_argument_error("spawn: world size must be at least 1");
  if (options.ranks_per_node < 0)
    return invalid_argument_error("spawn: ranks_per_node must not be negative");
  HIVEMIND_ASSIGN_OR_RETURN(std::string program, resolve_program(options.program));
  if (!options.log_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.log_dir, ec);
    if (ec) return errno_error("spawn: create log directory " + options.log_dir, ec.value());
  }

  // Everything the child needs is built here, before fork: the child only calls async-signal-safe
  // functions (a multithreaded parent may hold the allocator's lock at the moment of fork).
  std::vector<std::string> argv_storage;
  argv_storage.push_back(options.argv0.empty() ? options.program : options.argv0);
  argv_storage.insert(argv_storage.end(), options.args.begin(), options.args.end());
  std::vector<char*> argv;
  argv.reserve(argv_storage.size() + 1);
  for (auto& arg : argv_storage)
    argv.push_back(arg.data());
  argv.push_back(nullptr);

  auto overridden = [&options](std::string_view entry) {
    std::string_view name = entry.substr(0, entry.find('='));
    for (const char* variable : kRankVariables) {
      if (name == variable) return true;
    }
    for (const auto& [key, value] : options.env) {
      if (name == key) return true;
    }
    return false;
  };
  std::vector<std::string> base_env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    if (!overridden(*entry)) base_env.emplace_back(*entry);
  }
  for (const auto& [key, value] : options.env)
    base_env.push_back(fmt::format("{}={}", key, value));

  std::unique_ptr<SpawnedGroup> group(new SpawnedGroup(options));
  for (int rank = 0; rank < options.world_size; ++rank) {
    int per_node = options.ranks_per_node == 0 ? options.world_size : options.ranks_per_node;
    std::vector<std::string> env_storage = base_env;
    env_storage.push_back(fmt::format("HIVEMIND_RANK={}", rank));
    env_storage.push_back(fmt::format("HIVEMIND_WORLD_SIZE={}", options.world_size));
    env_storage.push_back(fmt::format("HIVEMIND_LOCAL_RANK={}", rank % per_node));
    env_storage.push_back(fmt::format("HIVEMIND_NODE_RANK={}", rank / per_node));
    std::vector<char*> envp;
    envp.reserve(env_storage.size() + 1);
    for (auto& entry : env_storage)
      envp.push_back(entry.data());
    envp.push_back(nullptr);
    std::string log_path = options.log_dir.empty()
                               ? std::string()
                               : fmt::format("{}/rank-{}.log", options.log_dir, rank);

    // The child reports a failed exec through this pipe; a successful exec closes it (CLOEXEC).
    int report[2];
    if (::pipe2(report, O_CLOEXEC) != 0) return errno_error("spawn: pipe", errno);
    pid_t pid = ::fork();
    if (pid < 0) {
      int err = errno;
      ::close(report[0]);
      ::close(report[1]);
      return errno_error("spawn: fork", err);
    }
    if (pid == 0) {
      ::close(report[0]);
      ::setpgid(0, 0);
      restore_default_signals();
      int err = 0;
      if (!log_path.empty()) {
        int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || ::dup2(fd, STDOUT_FILENO) < 0 || ::dup2(fd, STDERR_FILENO) < 0) err = errno;
        if (fd > STDERR_FILENO) ::close(fd);
      }
      if (err == 0) {
        ::execve(program.c_str(), argv.data(), envp.data());
        err = errno;
      }
      [[maybe_unused]] ssize_t n = ::write(report[1], &err, sizeof(err));
      ::_exit(127);
    }
    ::setpgid(
        pid,
        pid);  // also in the parent: whichever runs first, the group exists before we signal it
    ::close(report[1]);
    group->pids_.push_back(pid);
    group->reaped_.push_back(false);
    int child_errno = 0;
    ssize_t got;
    do {
      got = ::read(report[0], &child_errno, sizeof(child_errno));
    } while (got < 0 && errno == EINTR);
    ::close(report[0]);
    if (got == static_cast<ssize_t>(sizeof(child_errno))) {
      // The destructor kills and reaps the ranks started so far, this one included.
      return errno_error(fmt::format("spawn: cannot execute '{}' for rank {}{}", program, rank,
                                     log_path.empty() ? "" : " (log " + log_path + ")"),
                         child_errno);
    }
  }
  return group;
}

SpawnedGroup::~SpawnedGroup() {
  for (size_t i = 0; i < pids_.size(); ++i) {
    if (reaped_[i]) continue;
    ::kill(-pids_[i], SIGKILL);
    ::kill(pids_[i], SIGKILL);  // in case setpgid lost a race with an early exec failure
    int status = 0;
    while (::waitpid(pids_[i], &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void SpawnedGroup::signal_all(int signal) {
  for (size_t i = 0; i < pids_.size(); ++i) {
    if (!reaped_[i]) ::kill(-pids_[i], signal);
  }
}

SpawnReport SpawnedGroup::wait(Deadline deadline) {
  SpawnReport report;
  for (size_t i = 0; i < pids_.size(); ++i) {
    RankExit rank;
    rank.rank = static_cast<int>(i);
    rank.pid = pids_[i];
    report.ranks.push_back(rank);
  }
  std::optional<Deadline> kill_at;  // set once the ranks were told to stop
  bool killed = false;
  auto stop_the_rest = [&] {
    if (kill_at) return;
    for (size_t i = 0; i < pids_.size(); ++i) {
      if (!reaped_[i]) report.ranks[i].stopped_by_launcher = true;
    }
    signal_all(SIGTERM);
    kill_at = Deadline::after(options_.kill_grace);
  };

  // Polls each of our own pids (never waitpid(-1): the host program may have other children).
  // Latency here is irrelevant next to a process's lifetime; the backoff keeps the loop cheap.
  Milliseconds pause(1);
  size_t running =
      pids_.size() - static_cast<size_t>(std::count(reaped_.begin(), reaped_.end(), true));
  while (running > 0) {
    bool progressed = false;
    for (size_t i = 0; i < pids_.size(); ++i) {
      if (reaped_[i]) continue;
      int status = 0;
      pid_t got = ::waitpid(pids_[i], &status, WNOHANG);
      if (got == 0 || (got < 0 && errno == EINTR)) continue;
      reaped_[i] = true;
      --running;
      progressed = true;
      RankExit& rank = report.ranks[i];
      if (got < 0) {
        rank.exit_code = -1;  // ECHILD: someone else reaped it (SIGCHLD set to SIG_IGN?)
      } else if (WIFSIGNALED(status)) {
        rank.term_signal = WTERMSIG(status);
      } else {
        rank.exit_code = WEXITSTATUS(status);
      }
      if (!rank.ok() && !rank.stopped_by_launcher && !report.first_failed && !report.timed_out) {
        report.first_failed = rank.rank;
        stop_the_rest();
      }
    }
    if (running == 0) break;
    if (!kill_at && deadline.expired()) {
      report.timed_out = true;
      stop_the_rest();
    }
    if (kill_at && !killed && kill_at->expired()) {
      signal_all(SIGKILL);
      killed = true;
    }
    if (progressed) {
      pause = Milliseconds(1);
      continue;
    }
    Milliseconds limit = kill_at && !killed ? kill_at->remaining() : deadline.remaining();
    std::this_thread::sleep_for(
        std::max(Milliseconds(1), std::min({pause, limit, Milliseconds(20)})));
    pause = std::min(pause * 2, Milliseconds(20));
  }

  if (report.timed_out) {
    std::string still;
    for (const auto& rank : report.ranks) {
      if (rank.stopped_by_launcher)
        still += (still.empty() ? "" : ", ") + std::to_string(rank.rank);
    }
    report.status = timeout_error(
        fmt::format("spawn: {} rank(s) still running at the deadline (ranks {}); "
                    "they were terminated",
                    std::count_if(report.ranks.begin(), report.ranks.end(),
                                  [](const RankExit& r) { return r.stopped_by_launcher; }),
                    still));
  } else if (report.first_failed) {
    report.status = internal_error(
        fmt::format("spawn: {}; the other ranks were stopped",
                    report.ranks[static_cast<size_t>(*report.first_failed)].describe()));
  } else {
    for (const auto& rank : report.ranks) {
      if (!rank.ok()) {
        report.status = internal_error("spawn: " + rank.describe());
        break;
      }
    }
  }
  return report;
}

SpawnReport spawn_and_wait(const SpawnOptions& options, Deadline deadline) {
  auto group = SpawnedGroup::start(options);
  if (!group.is_ok()) {
    SpawnReport report;
    report.status = group.status();
    return report;
  }
  return (*group)->wait(deadline);
}

Result<std::optional<int>> maybe_spawn_self(int argc, const char* const* argv, Deadline deadline,
                                            const std::string& log_dir) {
  std::optional<int64_t> world_size;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::optional<std::string_view> value;
    if (arg == "--spawn") {
      if (i + 1 >= argc) return invalid_argument_error("--spawn needs a number of processes");
      value = argv[++i];
    } else if (arg.rfind("--spawn=", 0) == 0) {
      value = arg.substr(8);
    } else {
      rest.emplace_back(arg);
      continue;
    }
    auto parsed = parse_int(*value);
    if (!parsed.is_ok() || *parsed < 1 || *parsed > 4096) {
      return invalid_argument_error("--spawn " + std::string(*value) +
                                    ": expected a number of processes from 1 to 4096");
    }
    world_size = *parsed;
  }
  if (!world_size) return std::optional<int>();

  SpawnOptions options;
  options.program = "/proc/self/exe";
  options.args = std::move(rest);
  options.world_size = static_cast<int>(*world_size);
  options.log_dir = log_dir;
  // argv[0] as the user typed it, so the ranks' messages name the program they know.
  options.argv0 = argc > 0 ? argv[0] : "";
  SpawnReport report = spawn_and_wait(options, deadline);
  if (!report.status.is_ok()) {
    logger("common")->error("{}", report.status.to_string());
    for (const auto& rank : report.ranks) {
      if (!rank.ok()) {
        logger("common")->error(
            "  {}{}", rank.describe(),
            log_dir.empty() ? "" : fmt::format(" (log {}/rank-{}.log)", log_dir, rank.rank));
      }
    }
  }
  return std::optional<int>(report.exit_code());
}

}  // namespace hivemind
