#include <set>

#include <hivemind/common/byte_order.h>
#include <hivemind/dht/expert_registry.h>
#include <hivemind/dht/wire.h>

namespace hivemind::dht {

namespace {

constexpr uint8_t kExpertAddressVersion = 1;
constexpr size_t kMaxEndpointBytes = 256;
// The negative cache's own namespace: no uid or prefix can start with a control byte.
constexpr std::string_view kNegativeCachePrefix = "\x01hivemind.negative-cache:";

std::optional<int> parse_subkey(std::string_view text) {
  if (text == "-1") return kFlatExpert;
  return parse_uid_coordinate(text);
}

std::string negative_key(const std::string& prefix) {
  return std::string(kNegativeCachePrefix) + prefix;
}

}  // namespace

std::string encode_expert_address(const ExpertAddress& address) {
  std::vector<uint8_t> out;
  ByteWriter w(out);
  w.u8(kExpertAddressVersion);
  w.varint(address.uid.size());
  w.raw(address.uid);
  w.varint(address.endpoint.size());
  w.raw(address.endpoint);
  return std::string(out.begin(), out.end());
}

std::optional<ExpertAddress> decode_expert_address(std::string_view bytes) {
  ByteReader r(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  // A varint length of at most `limit`, then that many bytes.
  auto read_string = [&r](size_t limit, std::string& out) {
    uint64_t n;
    return r.varint(n) && n <= limit && r.string(static_cast<size_t>(n), out);
  };
  uint8_t version;
  ExpertAddress address;
  if (!r.u8(version) || version != kExpertAddressVersion) return std::nullopt;
  if (!read_string(kMaxUidBytes, address.uid) ||
      !read_string(kMaxEndpointBytes, address.endpoint) || !r.done())
    return std::nullopt;
  if (!is_valid_uid(address.uid) || !wire::is_valid_address(address.endpoint, kMaxEndpointBytes))
    return std::nullopt;
  return address;
}

Status declare_experts(Dht& dht, std::span<const std::string> uids, const std::string& endpoint,
                       DhtTime expiration, Deadline deadline) {
  if (!dht.is_own_endpoint(endpoint)) {
    return invalid_argument_error(
        "declare_experts: '" + endpoint +
        "' is not an endpoint of this node (a server may only declare itself)");
  }
  if (!wire::is_valid_address(endpoint, kMaxEndpointBytes)) {
    return invalid_argument_error("declare_experts: '" + endpoint + "' is not a valid address");
  }
  if (expiration <= dht.dht_now())
    return invalid_argument_error("declare_experts: expiration is in the past");
  std::vector<DhtStoreItem> items;
  std::vector<bool> is_uid_key;
  std::set<std::pair<std::string, std::string>> seen;  // (key, subkey) already queued
  for (const auto& uid : uids) {
    if (!is_valid_uid(uid))
      return invalid_argument_error("declare_experts: '" + uid + "' is not a valid expert uid");
    std::string value = encode_expert_address({uid, endpoint});
    if (!seen.emplace(uid, "").second) continue;  // listed twice
    items.push_back({uid, std::nullopt, value, expiration});
    is_uid_key.push_back(true);
    // Every prefix's dictionary gets this expert under its next coordinate.
    std::string current = uid;
    if (std::count(uid.begin(), uid.end(), kUidDelimiter) == 1)
      current += ".-1";  // hivemind's FLAT_EXPERT
    while (std::count(current.begin(), current.end(), kUidDelimiter) >= 1) {
      size_t pivot = current.rfind(kUidDelimiter);
      std::string prefix = current.substr(0, pivot + 1);
      std::string subkey = current.substr(pivot + 1);
      if (seen.emplace(prefix, subkey).second) {
        items.push_back({prefix, subkey, value, expiration});
        is_uid_key.push_back(false);
      }
      current = current.substr(0, pivot);
    }
  }
  HIVEMIND_ASSIGN_OR_RETURN(auto outcomes, dht.store(items, deadline));
  std::string failures;
  size_t failed = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const StoreOutcome& outcome = outcomes[i];
    if (outcome.ok()) continue;
    // A prefix entry held by a newer declaration is another live expert under that prefix: fine.
    if (!is_uid_key[i] && outcome.rejected > 0 && outcome.rejection == wire::StoreStatus::kOutdated)
      continue;
    if (++failed <= 5) {
      failures += (failures.empty() ? "" : ", ") + items[i].key +
                  (items[i].subkey ? "[" + *items[i].subkey + "]" : "") + " (" +
                  (outcome.rejected ? std::string(wire::store_status_name(outcome.rejection))
                                    : "no replica answered") +
                  ")";
    }
  }
  if (failed > 0) {
    return unavailable_error("declare_experts: " + std::to_string(failed) + " of " +
                             std::to_string(items.size()) +
                             " entries were not stored: " + failures);
  }
  return Status::ok();
}

Result<std::vector<std::optional<ExpertAddress>>> get_experts(Dht& dht,
                                                              std::span<const std::string> uids,
                                                              Deadline deadline) {
  for (const auto& uid : uids) {
    if (!is_valid_uid(uid))
      return invalid_argument_error("get_experts: '" + uid + "' is not a valid expert uid");
  }
  HIVEMIND_ASSIGN_OR_RETURN(auto records, dht.get(uids, deadline));
  std::vector<std::optional<ExpertAddress>> out(uids.size());
  for (size_t i = 0; i < uids.size(); ++i) {
    if (!records[i] || !records[i]->regular) continue;
    auto expert = decode_expert_address(records[i]->regular->value);
    if (expert && expert->uid == uids[i]) out[i] = std::move(expert);
  }
  return out;
}

namespace {

Result<std::vector<std::map<int, ExpertAddress>>> query_prefixes(
    Dht& dht, std::span<const std::string> prefixes, Deadline deadline,
    const SuccessorOptions& options) {
  std::vector<std::map<int, ExpertAddress>> out(prefixes.size());
  std::vector<std::string> keys;
  std::vector<size_t> asked;
  for (size_t i = 0; i < prefixes.size(); ++i) {
    const std::string& prefix = prefixes[i];
    if (!is_valid_prefix(prefix)) {
      return invalid_argument_error("'" + prefix +
                                    "' is not a valid expert prefix (it must end with '.')");
    }
    keys.push_back(prefix);
    asked.push_back(i);
  }
  if (options.negative_caching) {
    // Prefixes known to be empty are not asked again until their negative entry expires.
    std::vector<std::string> negative;
    negative.reserve(keys.size());
    for (const auto& key : keys)
      negative.push_back(negative_key(key));
    auto known_empty = dht.local_get_many(negative);
    size_t kept = 0;
    for (size_t j = 0; j < keys.size(); ++j) {
      if (known_empty[j]) continue;
      if (kept != j) keys[kept] = std::move(keys[j]);
      asked[kept] = asked[j];
      ++kept;
    }
    keys.resize(kept);
    asked.resize(kept);
  }
  if (keys.empty()) return out;
  HIVEMIND_ASSIGN_OR_RETURN(auto records, dht.get(keys, deadline));
  DhtTime now = dht.dht_now();
  std::vector<std::string> empty;
  for (size_t j = 0; j < keys.size(); ++j) {
    auto& successors = out[asked[j]];
    const std::string& prefix = keys[j];
    if (records[j]) {
      for (const auto& [subkey, entry] : records[j]->dictionary) {
        auto coordinate = parse_subkey(subkey);
        if (!coordinate) continue;
        auto expert = decode_expert_address(entry.value);
        if (!expert) continue;
        if (*coordinate == kFlatExpert) {
          // The prefix itself names a live one-dimensional expert ("ffn.5." -> "ffn.5").
          if (expert->uid + kUidDelimiter == prefix)
            successors.emplace(kFlatExpert, std::move(*expert));
          continue;
        }
        if (options.grid_size > 0 && *coordinate >= options.grid_size) continue;
        // An entry must point under its own prefix + coordinate, else it is junk (or an attack).
        std::string expected = prefix + subkey;
        if (expert->uid != expected && expert->uid.rfind(expected + kUidDelimiter, 0) != 0)
          continue;
        successors.emplace(*coordinate, std::move(*expert));
      }
    }
    if (successors.empty() && options.negative_caching) empty.push_back(negative_key(prefix));
  }
  if (!empty.empty()) dht.cache_locally_many(empty, "", now + options.negative_cache_ttl.count());
  return out;
}

}  // namespace

Result<std::vector<std::map<int, ExpertAddress>>> get_active_successors(
    Dht& dht, std::span<const std::string> prefixes, Deadline deadline,
    const SuccessorOptions& options) {
  return query_prefixes(dht, prefixes, deadline, options);
}

Result<std::vector<bool>> find_active_prefixes(Dht& dht, std::span<const std::string> prefixes,
                                               Deadline deadline, const SuccessorOptions& options) {
  HIVEMIND_ASSIGN_OR_RETURN(auto successors, query_prefixes(dht, prefixes, deadline, options));
  std::vector<bool> out;
  out.reserve(successors.size());
  for (const auto& map : successors)
    out.push_back(!map.empty());
  return out;
}

}  // namespace hivemind::dht
