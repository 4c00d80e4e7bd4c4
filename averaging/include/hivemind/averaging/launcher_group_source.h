// LauncherGroupSource: the membership a launcher (Slurm, mpirun, PMI) fixed: `size` ranks, rank 0
// leads and publishes its endpoint in a bootstrap file the others wait for.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <hivemind/averaging/group_source.h>

namespace hivemind::averaging {

// Membership from the launcher: rank/size and the leader's rendezvous file.
struct LauncherGroupOptions {
  // -1/0: read from SLURM_PROCID/SLURM_NTASKS, OMPI_COMM_WORLD_RANK/SIZE or PMI_RANK/PMI_SIZE
  // (common/env.h's read_launch_info, in its order).
  int rank = -1, size = 0;
  // Rank 0 (the leader) publishes its endpoint here; the others read it. Must be fresh for the job
  // (a file left by an earlier job would send the others to a dead leader).
  std::string bootstrap_file;
};

class LauncherGroupSource final : public GroupSource {
 public:
  // Resolves rank and size (from the environment where the options leave them unset) and checks
  // them; an error names what is missing or inconsistent.
  static Result<std::unique_ptr<LauncherGroupSource>> create(const LauncherGroupOptions& options);

  std::string_view name() const override { return "launcher"; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank 0 writes its endpoint to the bootstrap file (once); the others do nothing.
  Status declare(const MemberInfo& self, Deadline deadline) override;
  // Rank 0: itself, expecting `size` members. The others: the leader read from the bootstrap file
  // (waited for until `deadline` the first time, then remembered).
  Result<Candidates> candidates(const MemberInfo& self, Deadline deadline) override;

 private:
  LauncherGroupSource(int rank, int size, std::string bootstrap_file)
      : rank_(rank), size_(size), bootstrap_file_(std::move(bootstrap_file)) {}

  int rank_;
  int size_;
  std::string bootstrap_file_;
  bool published_ = false;
  std::optional<std::string> leader_;
};

}  // namespace hivemind::averaging
