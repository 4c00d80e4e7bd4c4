#include <cctype>
#include <charconv>

#include <fmt/format.h>

#include <hivemind/common/env.h>
#include <hivemind/common/hostlist.h>

namespace hivemind {
namespace {

Status bad_hostlist(std::string_view expression, std::string_view why) {
  return invalid_argument_error(fmt::format("invalid hostlist '{}': {}", expression, why));
}

bool is_separator(char c) {
  return c == ',' || std::isspace(static_cast<unsigned char>(c));
}

// One "prefix[ranges]" piece of an entry, its ranges already formatted with their zero padding.
struct Group {
  std::string prefix;
  std::vector<std::string> values;
};

// Parses "01-03,07" into formatted values. Width comes from the first number of each range, as in
// Slurm ("n[1-003]" gives n1 n2 n3, "n[001-3]" gives n001 n002 n003).
Status parse_ranges(std::string_view expression, std::string_view text, size_t max_hosts,
                    std::vector<std::string>& out) {
  if (text.empty()) return bad_hostlist(expression, "empty brackets");
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string_view item =
        text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    if (item.empty()) return bad_hostlist(expression, "empty range in brackets");
    size_t dash = item.find('-');
    std::string_view lo_text = item.substr(0, dash);
    std::string_view hi_text = dash == std::string_view::npos ? lo_text : item.substr(dash + 1);
    auto parse_number = [&](std::string_view digits, uint64_t& value) -> Status {
      bool all_digits = !digits.empty();
      for (char c : digits)
        all_digits = all_digits && c >= '0' && c <= '9';
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
      if (!all_digits || ec != std::errc() || end != digits.data() + digits.size()) {
        return bad_hostlist(expression, fmt::format("'{}' is not a range of numbers", item));
      }
      return Status::ok();
    };
    uint64_t lo = 0;
    uint64_t hi = 0;
    HIVEMIND_RETURN_IF_ERROR(parse_number(lo_text, lo));
    HIVEMIND_RETURN_IF_ERROR(parse_number(hi_text, hi));
    if (lo > hi) return bad_hostlist(expression, fmt::format("range '{}' runs backwards", item));
    if (hi - lo >= kHostlistMaxRange) {
      return too_large_error(fmt::format("invalid hostlist '{}': range '{}' has more than {} hosts",
                                         expression, item, kHostlistMaxRange));
    }
    if (out.size() + (hi - lo + 1) > max_hosts) {
      return too_large_error(
          fmt::format("hostlist '{}' names more than {} hosts", expression, max_hosts));
    }
    for (uint64_t v = lo;; ++v) {
      out.push_back(fmt::format("{:0{}}", v, lo_text.size()));
      if (v == hi) break;
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return Status::ok();
}

// Expands one entry (no top-level separators) and appends its hosts.
Status expand_entry(std::string_view expression, std::string_view entry, size_t max_hosts,
                    std::vector<std::string>& hosts) {
  std::vector<Group> groups;
  size_t pos = 0;
  while (true) {
    size_t open = entry.find_first_of("[]", pos);
    if (open == std::string_view::npos) break;
    if (entry[open] == ']') return bad_hostlist(expression, "']' without '['");
    size_t close = entry.find_first_of("[]", open + 1);
    if (close == std::string_view::npos) return bad_hostlist(expression, "'[' without ']'");
    if (entry[close] == '[') return bad_hostlist(expression, "nested '['");
    Group group;
    group.prefix = std::string(entry.substr(pos, open - pos));
    HIVEMIND_RETURN_IF_ERROR(parse_ranges(expression, entry.substr(open + 1, close - open - 1),
                                          max_hosts, group.values));
    groups.push_back(std::move(group));
    pos = close + 1;
  }
  if (groups.empty()) {
    if (hosts.size() >= max_hosts) {
      return too_large_error(
          fmt::format("hostlist '{}' names more than {} hosts", expression, max_hosts));
    }
    hosts.emplace_back(entry);
    return Status::ok();
  }
  // Slurm 22.05 rejects text after the last bracket group ("pre[1-2]post"); so do we.
  if (pos != entry.size()) {
    return bad_hostlist(expression, fmt::format("text '{}' after the last ']'", entry.substr(pos)));
  }

  uint64_t total = 1;
  for (const auto& group : groups) {
    total *= group.values.size();  // each factor <= max_hosts, checked below before it can overflow
    if (total > max_hosts || hosts.size() + total > max_hosts) {
      return too_large_error(
          fmt::format("hostlist '{}' names more than {} hosts", expression, max_hosts));
    }
  }

  // Slurm's loop nest (hostlist.c, _push_range_list): the last group is the innermost loop; the
  // rest are peeled from the right by recursion, so from outermost to innermost the order is groups
  // k-2, k-3, ..., 0, then k-1.
  const size_t k = groups.size();
  std::vector<size_t> order;
  for (size_t g = k - 1; g-- > 0;)
    order.push_back(g);
  order.push_back(k - 1);
  std::vector<size_t> index(k, 0);
  while (true) {
    std::string host;
    for (size_t g = 0; g < k; ++g) {
      host += groups[g].prefix;
      host += groups[g].values[index[g]];
    }
    hosts.push_back(std::move(host));
    // Odometer step: the last entry of `order` turns fastest.
    size_t level = order.size();
    while (level > 0) {
      size_t g = order[level - 1];
      if (++index[g] < groups[g].values.size()) break;
      index[g] = 0;
      --level;
    }
    if (level == 0) break;
  }
  return Status::ok();
}

}  // namespace

Result<std::vector<std::string>> expand_hostlist(std::string_view expression, size_t max_hosts) {
  std::vector<std::string> hosts;
  size_t start = 0;
  bool in_brackets = false;
  for (size_t i = 0; i <= expression.size(); ++i) {
    bool end = i == expression.size();
    if (!end) {
      char c = expression[i];
      if (c == '[') {
        if (in_brackets) return bad_hostlist(expression, "nested '['");
        in_brackets = true;
      } else if (c == ']') {
        if (!in_brackets) return bad_hostlist(expression, "']' without '['");
        in_brackets = false;
      }
      if (in_brackets || !is_separator(c)) continue;
    } else if (in_brackets) {
      return bad_hostlist(expression, "'[' without ']'");
    }
    if (i > start) {
      HIVEMIND_RETURN_IF_ERROR(
          expand_entry(expression, expression.substr(start, i - start), max_hosts, hosts));
    }
    start = i + 1;
  }
  return hosts;
}

Result<std::string> first_host(std::string_view expression) {
  HIVEMIND_ASSIGN_OR_RETURN(auto hosts, expand_hostlist(expression));
  if (hosts.empty())
    return invalid_argument_error(fmt::format("hostlist '{}' names no host", expression));
  return std::move(hosts.front());
}

EnvLookup process_env_lookup() {
  return [](const char* name) { return env_string(name); };
}

Result<HeadNode> slurm_head_node(const EnvLookup& env) {
  // Inside a step the step's own nodes come first: a step may run on a subset of the job's nodes.
  for (const char* name : {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"}) {
    auto value = env(name);
    if (!value || value->empty()) continue;
    auto host = first_host(*value);
    if (!host.is_ok())
      return host.status().with_context(std::string("environment variable ") + name);
    return HeadNode{std::move(*host), name};
  }
  return not_found_error(
      "--initial_peers auto needs a Slurm allocation: none of SLURM_STEP_NODELIST, "
      "SLURM_JOB_NODELIST, "
      "SLURM_NODELIST is set (pass explicit addresses or --bootstrap-file instead)");
}

Result<std::vector<std::string>> resolve_initial_peers(
    const std::vector<std::string>& initial_peers, uint16_t auto_port, const EnvLookup& env) {
  bool has_auto = false;
  for (const auto& peer : initial_peers)
    has_auto = has_auto || peer == "auto";
  if (!has_auto) return initial_peers;
  if (initial_peers.size() != 1) {
    return invalid_argument_error(
        "--initial_peers: 'auto' cannot be combined with explicit addresses");
  }
  if (auto_port == 0)
    return invalid_argument_error("--initial_peers auto needs a fixed, non-zero port");
  HIVEMIND_ASSIGN_OR_RETURN(auto head, slurm_head_node(env));
  return std::vector<std::string>{fmt::format("{}:{}", head.host, auto_port)};
}

}  // namespace hivemind
