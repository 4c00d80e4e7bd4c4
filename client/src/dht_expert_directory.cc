#include <hivemind/client/dht_expert_directory.h>

namespace hivemind::client {

Result<std::vector<std::map<int, ExpertAddress>>> DhtExpertDirectory::get_active_successors(
    std::span<const std::string> prefixes, Deadline deadline) {
  // The registry answers in the directory's own type: no conversion.
  return dht::get_active_successors(*dht_, prefixes, deadline, options_);
}

}  // namespace hivemind::client
