// hivemind-server's --config file, in either of two forms, chosen line by line:
//
//   hidden_dim = 1024                  # TOML-style: what --print-config writes
//   expert_uids = ["e.0.0", "e.0.1"]
//
//   hidden_dim: 1024                   # YAML-style: hivemind's config.yml (configargparse)
//   expert_uids: [e.0.0, e.0.1]
//   initial_peers:
//     - /ip4/10.0.0.1/tcp/31337
//
// Values are scalars (quoted with " or ', or bare up to a " #" comment) or lists (flow "[a, b]", or
// YAML block items "- a" under an empty "key:"). Anything else — a line that is neither form, an
// unclosed quote or bracket, a key given twice, a TOML [section] — is an error naming file:line.
// Which keys exist is the command line's business (command_line.cc), not this reader's.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <hivemind/common/result.h>

namespace hivemind::server {

// Far more than any configuration; a bigger file is a mistake (a checkpoint passed as --config).
inline constexpr size_t kConfigFileMaxBytes = 1 << 20;

struct ConfigValue {
  std::vector<std::string> values;  // one for a scalar; a list's items, possibly none
  bool is_list = false;
  int line = 0;  // 1-based, for messages
};

// Keys as written (dashed or underscored), each once.
using ConfigFile = std::map<std::string, ConfigValue>;

Result<ConfigFile> read_config_file(const std::string& path);

}  // namespace hivemind::server
