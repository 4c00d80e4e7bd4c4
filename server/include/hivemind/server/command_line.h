// The command line, environment and config file of hivemind-server, parsed into ServerOptions: a
// library function so that tests drive it without starting a server, and a program embedding
// server::Server can take the same flags.
//
// Every option is a flag (--name or --dashed-name), an environment variable HIVEMIND_<NAME> and a
// key of the config file (--config FILE: "name = value" lines, or hivemind's YAML "name: value").
// Precedence: flag > environment > config file > built-in default. Bad flags, values or keys fail
// at start with a message saying what to fix (file:line for the config file).
//
// hivemind's run_server.py flags are read too: --num_warmup_steps and --num_training_steps (aliases
// of --warmup_steps and --total_steps), --scheduler linear|none, /ip4/H/tcp/P[/p2p/ID] peers,
// --identity_path (accepted with a notice) and --custom_module_path (refused, pointing to
// --expert_cls torchscript --module_path).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <hivemind/server/server_options.h>

namespace hivemind::server {

struct ParsedCommandLine {
  ServerOptions options;
  bool exit_now = false;  // --help, --version or --print-config handled: exit with `exit_code`
  int exit_code = 0;
  std::string output;  // what to print before exiting (help text, config, errors)
  // One line each, for the log at start: options accepted but without effect here.
  std::vector<std::string> notices;
};

// Never throws; errors come back as exit_now with exit code 2 and a message in `output`.
// `env` reads a variable (getenv in the program, a map in tests).
ParsedCommandLine parse_command_line(
    const std::vector<std::string>& args,
    const std::function<std::optional<std::string>(const std::string&)>& env);

}  // namespace hivemind::server
