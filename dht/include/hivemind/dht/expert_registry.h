// The expert registry on top of the DHT (hivemind's moe/server/dht_handler.py and the DHT half of
// moe/client/beam_search.py).
//
// Expert uids follow hivemind's grammar (common/expert_uid.h): "ffn.3.14"; prefixes end with the
// delimiter: "ffn.", "ffn.3.". Declaring "ffn.3.14" at endpoint E stores
//   "ffn.3.14"             -> {uid, E}             (regular value)
//   "ffn."   [subkey "3"]  -> {"ffn.3.14", E}      (one dictionary per prefix: its live successors)
//   "ffn.3." [subkey "14"] -> {"ffn.3.14", E}
// and a one-dimensional uid "ffn.5" also stores "ffn.5." [subkey "-1"] (hivemind's FLAT_EXPERT), so
// the first-dimension query sees it. Every entry expires at the declared time; servers re-declare.
//
// Negative caching (a prefix found empty is not asked again for a while) lives in this node's local
// cache under keys of its own namespace — never on a real subkey, where hivemind's (subkey -1)
// shadowed live one-dimensional experts.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/clock.h>
#include <hivemind/common/expert_uid.h>
#include <hivemind/common/result.h>
#include <hivemind/dht/dht.h>
#include <hivemind/dht/expert_address.h>

namespace hivemind::dht {

inline constexpr int kFlatExpert = -1;
static_assert(kMaxUidBytes == kMaxKeyBytes, "a uid or prefix is a DHT key: the limits must agree");

// The value stored for an expert (versioned, length-prefixed uid and endpoint) and its parser,
// which rejects anything but a valid uid and a valid address.
std::string encode_expert_address(const ExpertAddress& address);
std::optional<ExpertAddress> decode_expert_address(std::string_view bytes);

// Makes `uids` visible until `expiration` (absolute DHT time). `endpoint` must be one of this
// node's own endpoints (Dht::is_own_endpoint): a server may only declare itself. Fails when an
// expert's own key was stored nowhere; a prefix entry refused as outdated is fine (another live
// expert represents it).
Status declare_experts(Dht& dht, std::span<const std::string> uids, const std::string& endpoint,
                       DhtTime expiration, Deadline deadline);

// Per uid: the live expert, or nullopt.
Result<std::vector<std::optional<ExpertAddress>>> get_experts(Dht& dht,
                                                              std::span<const std::string> uids,
                                                              Deadline deadline);

struct SuccessorOptions {
  // Only coordinates in [0, grid_size) (0 = no bound).
  int grid_size = 0;
  // Remember locally, for `negative_cache_ttl`, prefixes that had no live successor.
  bool negative_caching = true;
  Milliseconds negative_cache_ttl = std::chrono::seconds(30);
};

// The beam-search primitive, batched in one DHT round: for each prefix ("ffn.3."), its live
// successors (next coordinate -> an expert under prefix + coordinate). A flat expert "ffn.5"
// appears under "ffn.5." with coordinate -1 (kFlatExpert), as the client's ExpertDirectory expects.
// Entries whose uid does not lie under prefix + coordinate are dropped. Unknown prefixes map to an
// empty map.
Result<std::vector<std::map<int, ExpertAddress>>> get_active_successors(
    Dht& dht, std::span<const std::string> prefixes, Deadline deadline,
    const SuccessorOptions& options = {});

// The first-dimension primitive: which of these prefixes ("ffn.3.") have any live expert (a
// successor, or the flat one-dimensional expert itself).
Result<std::vector<bool>> find_active_prefixes(Dht& dht, std::span<const std::string> prefixes,
                                               Deadline deadline,
                                               const SuccessorOptions& options = {});

}  // namespace hivemind::dht
