// Splitting the comma lists of flags and environment variables ("cpu,cuda:0", UCX_TLS, "0-3,8").
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace hivemind {

// Every field between separators, empty ones included: "a,,b" -> {"a", "", "b"}, "" -> {""}. The
// views point into `text`.
std::vector<std::string_view> split(std::string_view text, char sep);

// A user's list: fields trimmed of spaces and tabs, empty ones dropped: " a, ,b " -> {"a", "b"}.
std::vector<std::string> split_list(std::string_view text, char sep = ',');

}  // namespace hivemind
