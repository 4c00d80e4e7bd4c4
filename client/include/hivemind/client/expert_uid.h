// Expert uids on the client's grid: "<prefix>.<c0>.<c1>...". The grammar itself (what a coordinate
// is) lives in common/expert_uid.h; this file adds only the grid's view of it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/expert_uid.h>

namespace hivemind::client {

// "expert" -> "expert."; "expert." stays. hivemind v0.8 took the bare form, later versions require
// the dot.
std::string normalize_uid_prefix(std::string_view uid_prefix);

// normalized prefix + "3.7" for coords {3, 7}.
std::string make_expert_uid(std::string_view normalized_prefix, std::span<const int32_t> coords);

// The grid coordinates of `uid`, or nullopt when it does not start with the prefix, has another
// number of coordinates than the grid has dimensions, or a coordinate is not a coordinate of the
// uid grammar (parse_uid_coordinate) inside the grid.
std::optional<std::vector<int32_t>> parse_expert_uid(std::string_view normalized_prefix,
                                                     std::string_view uid,
                                                     std::span<const int64_t> grid_size);

}  // namespace hivemind::client
