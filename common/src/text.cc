#include <hivemind/common/text.h>

namespace hivemind {

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(sep, start);
    if (end == std::string_view::npos) {
      parts.push_back(text.substr(start));
      return parts;
    }
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

std::vector<std::string> split_list(std::string_view text, char sep) {
  std::vector<std::string> items;
  for (std::string_view field : split(text, sep)) {
    const size_t first = field.find_first_not_of(" \t");
    if (first == std::string_view::npos) continue;
    const size_t last = field.find_last_not_of(" \t");
    items.emplace_back(field.substr(first, last - first + 1));
  }
  return items;
}

}  // namespace hivemind
