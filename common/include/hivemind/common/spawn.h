// `--spawn N`: a launcher of our own, so multi-process runs and tests need neither mpirun nor
// Slurm.
//
// Starts N copies of a program with HIVEMIND_RANK / HIVEMIND_WORLD_SIZE / HIVEMIND_LOCAL_RANK /
// HIVEMIND_NODE_RANK set (read back by read_launch_info()), optionally with one log file per rank,
// and waits for them with a deadline. The first rank that fails brings the others down (SIGTERM,
// then SIGKILL after a grace period), as mpirun and srun --kill-on-bad-exit do: a rank waiting for
// a dead peer would otherwise sit until its own timeout and hide the first, real error.
//
// Each rank runs in its own process group, so terminating a rank also reaches what it started
// (a /bin/sh child, for one).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>

namespace hivemind {

struct SpawnOptions {
  // A path, or a name looked up in PATH.
  std::string program;
  // argv[1..] of every rank.
  std::vector<std::string> args;
  // argv[0] of every rank; `program` when empty.
  std::string argv0;
  int world_size = 1;
  // Ranks per simulated node: local rank = rank % ranks_per_node, node rank = rank /
  // ranks_per_node. 0 puts every rank on one node (local rank = rank, node rank = 0).
  int ranks_per_node = 0;
  // When not empty, rank R's stdout and stderr go to <log_dir>/rank-<R>.log (the directory is
  // created).
  std::string log_dir;
  // Extra variables for every rank (they override inherited ones).
  std::vector<std::pair<std::string, std::string>> env;
  // Between SIGTERM and SIGKILL when ranks are brought down.
  Milliseconds kill_grace{3000};
};

struct RankExit {
  int rank = 0;
  pid_t pid = -1;
  int exit_code = -1;   // when the rank exited by itself
  int term_signal = 0;  // when a signal ended it
  bool stopped_by_launcher =
      false;  // we sent the signal (after another rank failed, or at the deadline)
  bool ok() const { return term_signal == 0 && exit_code == 0; }
  // "rank 2 (pid 4242) exited with code 3", "rank 1 (pid 4241) killed by signal 15 (Terminated)".
  std::string describe() const;
};

struct SpawnReport {
  std::vector<RankExit> ranks;      // indexed by rank
  std::optional<int> first_failed;  // the rank that failed first, by itself
  bool timed_out = false;
  // Ok when every rank exited with 0; otherwise an error naming the first failure or the timeout.
  Status status;
  // What a launcher's main() returns: 0, the first failed rank's exit code (128 + signal when
  // killed), or 124 after a timeout (as timeout(1)).
  int exit_code() const;
};

class SpawnedGroup {
 public:
  // Forks and execs every rank. An error when the program cannot be executed (the ranks already
  // started are killed and reaped first) or the log directory cannot be created.
  static Result<std::unique_ptr<SpawnedGroup>> start(const SpawnOptions& options);

  // Kills (SIGKILL) and reaps any rank still running: a group never leaves orphans behind.
  ~SpawnedGroup();
  SpawnedGroup(const SpawnedGroup&) = delete;
  SpawnedGroup& operator=(const SpawnedGroup&) = delete;

  // Waits for every rank. On the first failure, or when the deadline passes, the remaining ranks
  // get SIGTERM, then SIGKILL after kill_grace; so this returns by deadline + kill_grace at the
  // latest. Call once.
  SpawnReport wait(Deadline deadline);

  // Sends `signal` to every rank still running (to its whole process group): for a launcher that
  // forwards SIGTERM / SIGUSR1 it receives itself.
  void signal_all(int signal);

  const std::vector<pid_t>& pids() const { return pids_; }

 private:
  SpawnedGroup(SpawnOptions options) : options_(std::move(options)) {}

  SpawnOptions options_;
  std::vector<pid_t> pids_;
  std::vector<bool> reaped_;
};

// start() then wait(); a start error is reported in the status (with no ranks).
SpawnReport spawn_and_wait(const SpawnOptions& options, Deadline deadline);

// For a program with a `--spawn N` flag (the multi-node test): when argv holds "--spawn N" or
// "--spawn=N", runs N copies of this very executable (/proc/self/exe) with the same arguments minus
// that flag, and returns the exit code for main() to return. nullopt when the flag is absent (this
// process is a rank, or runs alone); InvalidArgument when N is not a positive integer.
Result<std::optional<int>> maybe_spawn_self(int argc, const char* const* argv, Deadline deadline,
                                            const std::string& log_dir = "");

}  // namespace hivemind
