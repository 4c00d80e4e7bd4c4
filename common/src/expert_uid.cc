#include <charconv>

#include <hivemind/common/expert_uid.h>

namespace hivemind {

namespace {

// "name.c1.c2" (trailing = false) or "name.c1." / "name." (trailing = true).
bool valid_grammar(std::string_view text, bool trailing) {
  if (text.empty() || text.size() > kMaxUidBytes) return false;
  size_t dot = text.find(kUidDelimiter);
  if (dot == std::string_view::npos || !is_valid_uid_name(text.substr(0, dot))) return false;
  std::string_view rest = text.substr(dot + 1);
  if (trailing) {
    if (rest.empty()) return true;  // "name."
    if (rest.back() != kUidDelimiter) return false;
    rest.remove_suffix(1);
  }
  if (rest.empty()) return false;
  while (true) {
    size_t next = rest.find(kUidDelimiter);
    if (!parse_uid_coordinate(rest.substr(0, next))) return false;
    if (next == std::string_view::npos) return true;
    rest = rest.substr(next + 1);
  }
}

}  // namespace

std::optional<int> parse_uid_coordinate(std::string_view text) {
  if (text.empty() || text.size() > 9) return std::nullopt;  // 9 digits always fit an int
  if (text.size() > 1 && text.front() == '0') return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  int value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

bool is_valid_uid_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (c <= ' ' || c > '~' || c == kUidDelimiter || c == '/' || c == '\\' || c == '"')
      return false;
  }
  return true;
}

bool is_valid_uid(std::string_view uid) {
  return valid_grammar(uid, false);
}

bool is_valid_prefix(std::string_view prefix) {
  return valid_grammar(prefix, true);
}

Result<std::pair<std::string, int>> split_uid(std::string_view uid_or_prefix) {
  std::string_view text = uid_or_prefix;
  bool prefix = !text.empty() && text.back() == kUidDelimiter;
  if (prefix ? !is_valid_prefix(text) : !is_valid_uid(text)) {
    return invalid_argument_error("'" + std::string(uid_or_prefix) +
                                  "' is not a valid expert uid or prefix");
  }
  if (prefix) text.remove_suffix(1);
  size_t pivot = text.rfind(kUidDelimiter);
  if (pivot == std::string_view::npos) {
    return invalid_argument_error("'" + std::string(uid_or_prefix) +
                                  "' has no coordinate to split off");
  }
  auto coordinate = parse_uid_coordinate(text.substr(pivot + 1));
  if (!coordinate)
    return invalid_argument_error("bad coordinate in '" + std::string(uid_or_prefix) + "'");
  return std::make_pair(std::string(text.substr(0, pivot + 1)), *coordinate);
}

}  // namespace hivemind
