// Expert uids: hivemind's grammar, checked here and nowhere else.
//
// A uid is "<name>.<c1>.<c2>...", e.g. "ffn.3.14": a name, then one or more coordinates, each a
// decimal integer without a leading zero that fits an int. A prefix is a uid's head up to a
// delimiter, "ffn." or "ffn.3.". The name is printable ASCII without spaces, dots, slashes,
// backslashes or quotes: uids end up in logs, metrics labels and checkpoint file names. A uid or
// prefix is at most kMaxUidBytes long, because both are DHT keys.
//
// The server's options, the expert RPC decoders, the expert registry, the uid patterns and the
// client's grid all call these functions, so a uid one of them accepts is a uid to all of them.
// They live in common because the byte-level protocol and the DHT both need them.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <hivemind/common/result.h>

namespace hivemind {

inline constexpr char kUidDelimiter = '.';
// The DHT's key limit (dht::kMaxKeyBytes; the DHT checks that the two agree).
inline constexpr size_t kMaxUidBytes = 80;

// One coordinate ("14"): its value, or nullopt for anything else ("", "014", "-1", "1a", more
// than 9 digits).
std::optional<int> parse_uid_coordinate(std::string_view text);

// Whether `name` may be the first part of a uid ("ffn", "ffn_v08"), length aside.
bool is_valid_uid_name(std::string_view name);

bool is_valid_uid(std::string_view uid);
bool is_valid_prefix(std::string_view prefix);

// "ffn.3.14" -> {"ffn.3.", 14}; "ffn.3." -> {"ffn.", 3}. InvalidArgument for anything else.
Result<std::pair<std::string, int>> split_uid(std::string_view uid_or_prefix);

}  // namespace hivemind
