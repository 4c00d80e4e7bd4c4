#include <optional>
#include <random>
#include <set>
#include <utility>

#include <fmt/format.h>

#include <hivemind/common/expert_uid.h>
#include <hivemind/common/text.h>
#include <hivemind/dht/uid_pattern.h>

namespace hivemind::dht {

namespace {

struct Grid {
  std::string name;
  std::vector<std::pair<int64_t, int64_t>> dims;  // [lo, hi) per coordinate
  int64_t size = 1;
};

Result<Grid> parse(std::string_view pattern) {
  auto bad = [&](const std::string& why) {
    return invalid_argument_error(fmt::format(
        "uid pattern '{}': {} (expected e.g. \"expert.[0:4].[0:4]\")", std::string(pattern), why));
  };
  auto parts = split(pattern, '.');
  if (parts.size() < 2) return bad("needs a name and at least one coordinate");
  // Brackets and colons would make the name read as a range.
  if (!is_valid_uid_name(parts[0]) || parts[0].find_first_of("[]:") != std::string_view::npos)
    return bad("bad name");
  Grid grid;
  grid.name = std::string(parts[0]);
  for (size_t i = 1; i < parts.size(); ++i) {
    std::string_view p = parts[i];
    if (auto v = parse_uid_coordinate(p)) {
      grid.dims.emplace_back(*v, int64_t{*v} + 1);
      continue;
    }
    if (p.size() < 5 || p.front() != '[' || p.back() != ']')
      return bad(fmt::format("bad part '{}'", p));
    auto range = split(p.substr(1, p.size() - 2), ':');
    std::optional<int> lo_coordinate, hi_coordinate;
    if (range.size() == 2) {
      lo_coordinate = parse_uid_coordinate(range[0]);
      hi_coordinate = parse_uid_coordinate(range[1]);
    }
    if (!lo_coordinate || !hi_coordinate) return bad(fmt::format("bad range '{}'", p));
    const int64_t lo = *lo_coordinate;
    const int64_t hi = *hi_coordinate;
    if (hi <= lo) return bad(fmt::format("empty range '{}'", p));
    grid.dims.emplace_back(lo, hi);
  }
  // The longest uid of the grid must still be a uid (and a DHT key).
  size_t longest_uid = grid.name.size();
  for (auto [lo, hi] : grid.dims)
    longest_uid += 1 + std::to_string(hi - 1).size();
  if (longest_uid > kMaxUidBytes) {
    return bad(
        fmt::format("its longest uid has {} bytes, a uid at most {}", longest_uid, kMaxUidBytes));
  }
  for (auto [lo, hi] : grid.dims) {
    grid.size *= hi - lo;
    if (grid.size > (int64_t{1} << 40)) return bad("grid too large");
  }
  return grid;
}

}  // namespace

Result<int64_t> uid_pattern_size(std::string_view pattern) {
  HIVEMIND_ASSIGN_OR_RETURN(Grid grid, parse(pattern));
  return grid.size;
}

Result<std::vector<std::string>> expand_uid_pattern(std::string_view pattern, int64_t count,
                                                    uint64_t seed) {
  HIVEMIND_ASSIGN_OR_RETURN(Grid grid, parse(pattern));
  const int64_t total = grid.size;
  if (count < 0) return invalid_argument_error("the number of uids to draw must be >= 0");
  if (count > total) {
    return invalid_argument_error(fmt::format("{} uids asked of pattern '{}', which has {}", count,
                                              std::string(pattern), total));
  }
  if (count == 0 && total > kMaxExpandedUidGrid) {
    return invalid_argument_error(fmt::format(
        "uid pattern '{}' has {} uids; draw a sample of it instead", std::string(pattern), total));
  }
  std::vector<int64_t> chosen;
  if (count == 0 || count == total) {
    for (int64_t i = 0; i < total; ++i)
      chosen.push_back(i);
  } else {
    // Floyd's sampling: `count` distinct grid indices without materialising the grid.
    std::mt19937_64 rng(seed);
    std::set<int64_t> picked;
    for (int64_t j = total - count; j < total; ++j) {
      const int64_t t = std::uniform_int_distribution<int64_t>(0, j)(rng);
      if (!picked.insert(t).second) picked.insert(j);
    }
    chosen.assign(picked.begin(), picked.end());
  }
  std::vector<std::string> uids;
  uids.reserve(chosen.size());
  std::vector<int64_t> coords(grid.dims.size());
  for (int64_t index : chosen) {
    for (size_t d = grid.dims.size(); d-- > 0;) {
      const int64_t size = grid.dims[d].second - grid.dims[d].first;
      coords[d] = grid.dims[d].first + index % size;
      index /= size;
    }
    uids.push_back(fmt::format("{}.{}", grid.name, fmt::join(coords, ".")));
  }
  return uids;
}

}  // namespace hivemind::dht
