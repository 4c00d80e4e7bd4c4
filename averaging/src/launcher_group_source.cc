#include <fmt/format.h>

#include <hivemind/averaging/launcher_group_source.h>
#include <hivemind/common/bootstrap_file.h>
#include <hivemind/common/env.h>

namespace hivemind::averaging {

Result<std::unique_ptr<LauncherGroupSource>> LauncherGroupSource::create(
    const LauncherGroupOptions& options) {
  int rank = options.rank;
  int size = options.size;
  if (rank < 0 || size <= 0) {
    HIVEMIND_ASSIGN_OR_RETURN(LaunchInfo launch, read_launch_info());
    if (!launch.launched()) {
      return invalid_argument_error(
          "averaging: launcher membership needs rank and size, and no launcher variables are set "
          "(SLURM_PROCID/SLURM_NTASKS, OMPI_COMM_WORLD_RANK/SIZE, PMI_RANK/PMI_SIZE)");
    }
    if (rank < 0) rank = launch.rank;
    if (size <= 0) size = launch.world_size;
  }
  if (size <= 0 || rank < 0 || rank >= size) {
    return invalid_argument_error(
        fmt::format("averaging: launcher rank {} is not within size {}", rank, size));
  }
  if (options.bootstrap_file.empty() && size > 1) {
    return invalid_argument_error(
        "averaging: launcher membership needs a bootstrap_file where rank 0 publishes its "
        "endpoint");
  }
  return std::unique_ptr<LauncherGroupSource>(
      new LauncherGroupSource(rank, size, options.bootstrap_file));
}

Status LauncherGroupSource::declare(const MemberInfo& self, Deadline) {
  if (rank_ != 0 || published_ || size_ == 1) return Status::ok();
  HIVEMIND_RETURN_IF_ERROR(write_bootstrap_file(bootstrap_file_, {self.endpoint})
                               .with_context("averaging: publishing the leader's endpoint"));
  published_ = true;
  return Status::ok();
}

Result<Candidates> LauncherGroupSource::candidates(const MemberInfo& self, Deadline deadline) {
  Candidates result;
  result.expected = static_cast<size_t>(size_);
  if (rank_ == 0) {
    result.leader = self.endpoint;
  } else {
    if (!leader_) {
      auto addresses = wait_for_bootstrap_file(bootstrap_file_, deadline);
      if (!addresses.is_ok())
        return addresses.status().with_context("averaging: waiting for the leader (rank 0)");
      leader_ = addresses->front();
    }
    result.leader = leader_;
  }
  result.endpoints = {*result.leader};
  if (*result.leader != self.endpoint) result.endpoints.push_back(self.endpoint);
  return result;
}

}  // namespace hivemind::averaging
