#include <hivemind/client/dht_expert_directory.h>

namespace hivemind::client {

Result<std::vector<std::map<int, ExpertRef>>> DhtExpertDirectory::get_active_successors(
    std::span<const std::string> prefixes, Deadline deadline) {
  HIVEMIND_ASSIGN_OR_RETURN(auto found,
                            dht::get_active_successors(*dht_, prefixes, deadline, options_));
  std::vector<std::map<int, ExpertRef>> result(found.size());
  for (size_t i = 0; i < found.size(); ++i) {
    for (auto& [coordinate, info] : found[i]) {
      result[i].emplace(coordinate, ExpertRef{std::move(info.uid), std::move(info.endpoint)});
    }
  }
  return result;
}

}  // namespace hivemind::client
