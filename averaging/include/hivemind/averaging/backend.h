// Backend: one way of computing the group mean of every member's tensors, in place.
//
// A round runs exactly one backend, the one the leader picked (Group::backend): the first backend
// of the leader's preference list that every member listed. Backends never form groups or talk to
// the DHT; they get a fixed Group and a deadline.
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include <hivemind/averaging/group.h>
#include <hivemind/averaging/round_report.h>
#include <hivemind/averaging/tensor_ref.h>
#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>

namespace hivemind::averaging {

class Backend {
 public:
  virtual ~Backend() = default;

  // The name members advertise in MemberInfo::backends ("transport", "nccl").
  virtual std::string_view name() const = 0;

  // Whether this process can run this backend on these tensors (NCCL: every tensor on one CUDA
  // device, NCCL loaded). `device_id` receives what MemberInfo::device_id should say.
  virtual bool usable_for(std::span<const TensorRef> tensors, std::string& device_id) const = 0;

  // Run by the leader once per round before the group is sent out; the bytes reach every member
  // as Group::backend_setup (NCCL: a fresh ncclUniqueId). Empty when the backend needs none.
  virtual Result<std::vector<uint8_t>> leader_setup(const Group& group) = 0;

  // Replaces every tensor with the mean over the group's members, or fails. Returns by `deadline`
  // whatever the other members do (a member that dies or stalls makes the round fail, never hang).
  // On failure the tensors are unchanged. Adds the bytes it moved to `report`. Called from one
  // thread at a time per Backend.
  virtual Status all_reduce_mean(const Group& group, std::span<const TensorRef> tensors,
                                 Deadline deadline, RoundReport& report) = 0;
};

}  // namespace hivemind::averaging
