// Expert uid patterns: "expert.[0:4].[0:8]" names the grid expert.0.0 ... expert.3.7.
//
// Grammar: dot-separated parts, the first a name (no dots, brackets or colons), each other one a
// coordinate ("12", no leading zeros) or a range "[a:b]" meaning a..b-1. Servers host a pattern (or
// a sample of it); `hivemind-dht --check --experts` measures how much of one is live.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/result.h>

namespace hivemind::dht {

// Grids larger than this are only expanded as a sample (count > 0).
inline constexpr int64_t kMaxExpandedUidGrid = int64_t{1} << 16;
// Longest uid a server hosts.
inline constexpr size_t kMaxGridUidBytes = 256;

// Whether `uid` is one uid of the grammar: a name and one or more coordinates ("expert.0.12"), no
// ranges, at most kMaxGridUidBytes. hivemind's uid grammar.
bool is_grid_uid(std::string_view uid);

// The number of uids `pattern` names, or InvalidArgument saying what is wrong with it.
Result<int64_t> uid_pattern_size(std::string_view pattern);

// The uids of `pattern` in grid order: all of them when `count` is 0, otherwise `count` distinct
// ones drawn with `seed` (without materialising the grid).
Result<std::vector<std::string>> expand_uid_pattern(std::string_view pattern, int64_t count = 0,
                                                    uint64_t seed = 0);

}  // namespace hivemind::dht
