#include <hivemind/client/expert_uid.h>

namespace hivemind::client {

std::string normalize_uid_prefix(std::string_view uid_prefix) {
  std::string prefix(uid_prefix);
  if (prefix.empty() || prefix.back() != kUidDelimiter) prefix += kUidDelimiter;
  return prefix;
}

std::string make_expert_uid(std::string_view normalized_prefix, std::span<const int32_t> coords) {
  std::string uid(normalized_prefix);
  for (size_t d = 0; d < coords.size(); ++d) {
    if (d > 0) uid += kUidDelimiter;
    uid += std::to_string(coords[d]);
  }
  return uid;
}

std::optional<std::vector<int32_t>> parse_expert_uid(std::string_view normalized_prefix,
                                                     std::string_view uid,
                                                     std::span<const int64_t> grid_size) {
  if (!uid.starts_with(normalized_prefix)) return std::nullopt;
  std::string_view rest = uid.substr(normalized_prefix.size());
  std::vector<int32_t> coords;
  coords.reserve(grid_size.size());
  while (true) {
    const size_t dot = rest.find(kUidDelimiter);
    const std::string_view part = rest.substr(0, dot);
    if (coords.size() >= grid_size.size()) return std::nullopt;
    const std::optional<int> value = parse_uid_coordinate(part);
    if (!value || *value >= grid_size[coords.size()]) return std::nullopt;
    coords.push_back(*value);
    if (dot == std::string_view::npos) break;
    rest = rest.substr(dot + 1);
  }
  if (coords.size() != grid_size.size()) return std::nullopt;
  return coords;
}

}  // namespace hivemind::client
