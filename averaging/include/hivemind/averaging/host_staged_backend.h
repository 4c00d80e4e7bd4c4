// HostStagedBackend: a host-memory backend (the transport all-reduce) run on CUDA tensors, by
// staging them through pinned host memory.
//
// The transport moves host bytes, so CUDA tensors reach it as copies: device -> host before the
// round (on the tensors' stream, after the work that produced them), the host backend's round on
// those copies, and host -> device only when the round succeeded, so a failed round leaves the
// device tensors as they were (the contract in backend.h). This is how a group that cannot run NCCL
// (a member without NCCL, two members on one GPU) averages GPU parameters, and how an NCCL round
// that failed is retried over the transport. Host tensors pass straight through to the wrapped
// backend.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/averaging/backend.h>

namespace hivemind::averaging {

class HostStagedBackend final : public Backend {
 public:
  struct Staging;  // the pinned host region, reused from round to round

  explicit HostStagedBackend(std::shared_ptr<Backend> host_backend);
  ~HostStagedBackend() override;

  // The wrapped backend's name: members see one "transport" whatever memory their tensors are in.
  std::string_view name() const override { return host_backend_->name(); }
  // Host tensors: the wrapped backend's answer. CUDA tensors: true where this build has CUDA and
  // the device exists (the wrapped backend would take host tensors of the same shapes).
  bool usable_for(std::span<const TensorRef> tensors, std::string& device_id) const override;
  Result<std::vector<uint8_t>> leader_setup(const Group& group) override;
  Status all_reduce_mean(const Group& group, std::span<const TensorRef> tensors, Deadline deadline,
                         RoundReport& report) override;

  // Whether this build can stage CUDA tensors at all (built with the CUDA runtime).
  static bool built_with_cuda();

 private:
  std::shared_ptr<Backend> host_backend_;
  std::unique_ptr<Staging> staging_;
};

}  // namespace hivemind::averaging
