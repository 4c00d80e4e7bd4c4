// Expert uid patterns: "expert.[0:4].[0:8]" names the grid expert.0.0 ... expert.3.7.
//
// Grammar: dot-separated parts, the first a name (no dots, brackets or colons), each other one a
// coordinate of the uid grammar (common/expert_uid.h: "12", no leading zeros) or a range "[a:b]" of
// two such coordinates meaning a..b-1. Every uid a pattern names is a valid uid. Servers host a
// pattern (or a sample of it); `hivemind-dht --check --experts` measures how much of one is live.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/result.h>

namespace hivemind::dht {

// Grids larger than this are only expanded as a sample (count > 0).
inline constexpr int64_t kMaxExpandedUidGrid = int64_t{1} << 16;
// The number of uids `pattern` names, or InvalidArgument saying what is wrong with it.
Result<int64_t> uid_pattern_size(std::string_view pattern);

// The uids of `pattern` in grid order: all of them when `count` is 0, otherwise `count` distinct
// ones drawn with `seed` (without materialising the grid).
Result<std::vector<std::string>> expand_uid_pattern(std::string_view pattern, int64_t count = 0,
                                                    uint64_t seed = 0);

}  // namespace hivemind::dht
