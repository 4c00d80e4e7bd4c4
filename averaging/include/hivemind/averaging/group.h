// Group: who takes part in one averaging round, as the leader fixed it.
//
// Every member of a round holds the same Group: the leader (members[0]) decides the member list,
// their order, the backend and that backend's setup bytes, and sends them to every member. Nothing
// about a round is decided twice, so members can never disagree on who owns which part.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hivemind::averaging {

// What one member says about itself when it asks to join a round.
struct MemberInfo {
  std::string endpoint;  // where its averaging rpc methods are served ("tcp://10.0.0.5:41234")
  // Backends this member can run for the tensors it brings, by Backend::name(), in its order of
  // preference (e.g. {"nccl", "transport"}). Every member can run "transport".
  std::vector<std::string> backends;
  // What the member averages on, for backends that need one distinct device per member (NCCL:
  // the GPU's UUID). Empty for host tensors.
  std::string device_id;

  friend bool operator==(const MemberInfo&, const MemberInfo&) = default;
};

struct Group {
  std::string key;                  // what the members average under, e.g. "run42.dense"
  uint64_t round = 0;               // the leader's round number; parts of other rounds are refused
  std::vector<MemberInfo> members;  // members[0] is the leader; the order assigns parts
  size_t self = 0;                  // this process's index in `members`
  std::string backend;              // the Backend::name() every member runs this round
  std::vector<uint8_t> backend_setup;  // Backend::leader_setup()'s bytes (e.g. an ncclUniqueId)

  size_t size() const { return members.size(); }
  bool is_leader() const { return self == 0; }
};

}  // namespace hivemind::averaging
