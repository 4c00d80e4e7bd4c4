#include "config_file.h"

#include <cctype>
#include <fstream>
#include <optional>
#include <sstream>

#include <fmt/format.h>

namespace hivemind::server {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool is_key_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
}

// Reads one scalar at the start of `text` and leaves `text` after it. `stop` lists the characters
// that end a bare scalar (',' and ']' inside a flow list). Errors are plain phrases; the caller
// adds file:line.
Result<std::string> take_scalar(std::string_view& text, std::string_view stop) {
  text = trim(text);
  if (!text.empty() && (text.front() == '"' || text.front() == '\'')) {
    const char quote = text.front();
    std::string out;
    size_t i = 1;
    for (; i < text.size(); ++i) {
      const char c = text[i];
      if (quote == '"' && c == '\\' && i + 1 < text.size()) {
        out += text[++i];  // \" and \\, as --print-config writes them
      } else if (quote == '\'' && c == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
        out += '\'';  // YAML's '' inside single quotes
        ++i;
      } else if (c == quote) {
        break;
      } else {
        out += c;
      }
    }
    if (i == text.size()) return invalid_argument_error(fmt::format("unclosed {} quote", quote));
    text.remove_prefix(i + 1);
    return out;
  }
  size_t end = 0;
  while (end < text.size() && stop.find(text[end]) == std::string_view::npos &&
         !(text[end] == '#' && (end == 0 || text[end - 1] == ' ' || text[end - 1] == '\t')))
    ++end;
  std::string out(trim(text.substr(0, end)));
  text.remove_prefix(end);
  return out;
}

// After a value: nothing, or a comment.
bool only_comment_left(std::string_view rest) {
  rest = trim(rest);
  return rest.empty() || rest.front() == '#';
}

Result<ConfigValue> parse_value(std::string_view text) {
  ConfigValue value;
  text = trim(text);
  if (!text.empty() && text.front() == '[') {
    value.is_list = true;
    text.remove_prefix(1);
    while (true) {
      text = trim(text);
      if (text.empty()) return invalid_argument_error("unclosed '[' (a list ends with ']')");
      if (text.front() == ']') {
        text.remove_prefix(1);
        break;
      }
      HIVEMIND_ASSIGN_OR_RETURN(std::string item, take_scalar(text, ",]"));
      if (item.empty()) return invalid_argument_error("an empty item in a list");
      value.values.push_back(std::move(item));
      text = trim(text);
      if (!text.empty() && text.front() == ',') text.remove_prefix(1);
    }
  } else {
    HIVEMIND_ASSIGN_OR_RETURN(std::string scalar, take_scalar(text, ""));
    value.values.push_back(std::move(scalar));
  }
  if (!only_comment_left(text))
    return invalid_argument_error(fmt::format("unexpected '{}' after the value", trim(text)));
  return value;
}

}  // namespace

Result<ConfigFile> read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found_error(fmt::format("config file {}: cannot be opened", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string content = buffer.str();
  if (content.size() > kConfigFileMaxBytes) {
    return too_large_error(fmt::format("config file {} is larger than {} bytes: not a config file",
                                       path, kConfigFileMaxBytes));
  }

  ConfigFile config;
  std::string block_key;  // a YAML "key:" with no value opens a block list of "- item" lines
  std::istringstream lines(content);
  std::string raw;
  for (int number = 1; std::getline(lines, raw); ++number) {
    auto fail = [&](const std::string& why) {
      return invalid_argument_error(fmt::format("{}:{}: {}", path, number, why));
    };
    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#' || line == "---" || line == "...") continue;
    if (line.front() == '-' && (line.size() == 1 || line[1] == ' ' || line[1] == '\t')) {
      if (block_key.empty())
        return fail("a list item '- ...' belongs under a 'key:' line with no value");
      std::string_view rest = line.substr(1);
      auto item = take_scalar(rest, "");
      if (!item.is_ok()) return fail(item.status().message());
      if (item->empty() || !only_comment_left(rest)) return fail("a list item needs one value");
      config[block_key].values.push_back(std::move(*item));
      continue;
    }
    block_key.clear();
    if (line.front() == '[')
      return fail("sections ('[name]') are not supported: keys are the flag names, at top level");
    size_t key_end = 0;
    while (key_end < line.size() && is_key_char(line[key_end]))
      ++key_end;
    const std::string key(line.substr(0, key_end));
    std::string_view rest = trim(line.substr(key_end));
    if (key.empty() || rest.empty() || (rest.front() != '=' && rest.front() != ':')) {
      return fail(fmt::format("'{}' is neither 'key = value' nor 'key: value'", line));
    }
    const bool yaml = rest.front() == ':';
    rest.remove_prefix(1);
    if (auto it = config.find(key); it != config.end())
      return fail(fmt::format("'{}' is set again (first on line {})", key, it->second.line));
    if (only_comment_left(rest)) {
      if (!yaml) return fail(fmt::format("'{}' has no value", key));
      block_key = key;  // "key:" then "- item" lines; no items at all is an empty list
      config[key] = ConfigValue{{}, true, number};
      continue;
    }
    auto value = parse_value(rest);
    if (!value.is_ok()) return fail(fmt::format("'{}': {}", key, value.status().message()));
    value->line = number;
    config[key] = std::move(*value);
  }
  return config;
}

}  // namespace hivemind::server
