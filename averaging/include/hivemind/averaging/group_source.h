// GroupSource: where one round's candidate members come from (the DHT, or the launcher).
//
// A source says who may take part in the next round and, where the membership fixes it, who leads;
// the join protocol (matchmaker.h) then forms the group. Sources know nothing about backends.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <hivemind/averaging/group.h>
#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>

namespace hivemind::averaging {

struct Candidates {
  // Endpoints of the members believed alive, this member's included, in no particular order.
  std::vector<std::string> endpoints;
  // The leader when the membership fixes it (the launcher's rank 0); unset: the smallest endpoint
  // of `endpoints` not suspected.
  std::optional<std::string> leader;
  // How many members a complete group has (the launcher's size; for the DHT, endpoints.size()).
  size_t expected = 1;
};

class GroupSource {
 public:
  virtual ~GroupSource() = default;
  virtual std::string_view name() const = 0;
  // Announces this member for the coming rounds (the DHT declaration, the leader's bootstrap file).
  // Called once at start and then before every round.
  virtual Status declare(const MemberInfo& self, Deadline deadline) = 0;
  virtual Result<Candidates> candidates(const MemberInfo& self, Deadline deadline) = 0;
};

}  // namespace hivemind::averaging
