// DhtExpertDirectory: the ExpertDirectory over the DHT's expert registry (live experts declared by
// the servers, with expirations), so beam search finds experts anywhere in the swarm.
#pragma once

#include <memory>

#include <hivemind/client/expert_directory.h>
#include <hivemind/dht/dht.h>
#include <hivemind/dht/expert_registry.h>

namespace hivemind::client {

class DhtExpertDirectory final : public ExpertDirectory {
 public:
  explicit DhtExpertDirectory(std::shared_ptr<dht::Dht> dht, dht::SuccessorOptions options = {})
      : dht_(std::move(dht)), options_(options) {}

  Result<std::vector<std::map<int, ExpertAddress>>> get_active_successors(
      std::span<const std::string> prefixes, Deadline deadline) override;

  dht::Dht& dht() { return *dht_; }

 private:
  std::shared_ptr<dht::Dht> dht_;
  dht::SuccessorOptions options_;
};

}  // namespace hivemind::client
