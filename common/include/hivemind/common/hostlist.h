// Slurm hostlist expressions ("node[01-03,07],gpu-a[1-2]") and the head node of an allocation.
//
// Our own expander, so a process needs neither libslurm nor the scontrol binary to learn its peers.
// It reproduces `scontrol show hostnames` (Slurm 22.05) on every well-formed expression: zero
// padding taken from the width of a range's first number, several bracket groups per name (in
// Slurm's own order: the last group varies fastest, then the first, then the second, ...),
// duplicates kept. Where scontrol accepts garbage ("n[1-3", "n[ 1-2]", "n[1-]") we return an error
// instead: a nodelist that does not parse cleanly is a configuration bug to report, not something
// to guess at.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/result.h>

namespace hivemind {

// Slurm refuses a single range of more than 64 Ki hosts; we do the same, plus a cap on the whole
// list so a hostile or mistyped expression cannot make us allocate without bound.
inline constexpr uint64_t kHostlistMaxRange = 65536;
inline constexpr size_t kHostlistDefaultMaxHosts = 1 << 20;

// Expands a hostlist expression into host names, in Slurm's order. Entries are separated by commas
// or whitespace outside brackets; empty entries are skipped; "" gives an empty list. Errors
// (InvalidArgument, or TooLarge past `max_hosts`) quote the expression.
Result<std::vector<std::string>> expand_hostlist(std::string_view expression,
                                                 size_t max_hosts = kHostlistDefaultMaxHosts);

// The first host of an expression (an error when it names none).
Result<std::string> first_host(std::string_view expression);

// Looks up an environment variable; injectable so tests need not touch the process environment.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;
EnvLookup process_env_lookup();

// The port `--initial_peers auto` dials on the head node when none is configured.
inline constexpr uint16_t kDefaultAutoPeerPort = 31337;

struct HeadNode {
  std::string host;
  // The variable the nodelist came from ("SLURM_STEP_NODELIST", ...), for messages.
  std::string source;
};

// The head node of the current Slurm allocation: the first host of SLURM_STEP_NODELIST (inside a
// step), else SLURM_JOB_NODELIST (in the batch shell), else SLURM_NODELIST (older Slurm). NotFound
// outside Slurm; InvalidArgument naming the variable when its value does not parse.
Result<HeadNode> slurm_head_node(const EnvLookup& env = process_env_lookup());

// Resolves the `--initial_peers` value list: a single "auto" becomes {"<head>:<port>"} (the head
// node of the allocation, see slurm_head_node); any other list is returned unchanged. "auto" mixed
// with explicit addresses is an InvalidArgument (the user meant one or the other).
Result<std::vector<std::string>> resolve_initial_peers(
    const std::vector<std::string>& initial_peers, uint16_t auto_port = kDefaultAutoPeerPort,
    const EnvLookup& env = process_env_lookup());

}  // namespace hivemind
