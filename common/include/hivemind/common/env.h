// Environment and configuration helpers: HIVEMIND_* variables and the launcher's rank variables.
//
// Precedence everywhere in the project: command-line flag > HIVEMIND_<FLAG> variable > config file
// > built-in default. These helpers read and validate the variable layer; a malformed value is an
// error that names the variable, never a silent fallback.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <hivemind/common/result.h>

namespace hivemind {

// "max_batch_size" or "max-batch-size" -> "HIVEMIND_MAX_BATCH_SIZE".
std::string env_name_for_flag(std::string_view flag);

// The variable's value, or nullopt when unset. An empty value counts as set.
std::optional<std::string> env_string(const char* name);

// Typed reads: nullopt when unset, an InvalidArgument error naming the variable when malformed.
Result<std::optional<int64_t>> env_int(const char* name);
Result<std::optional<double>> env_double(const char* name);
// Accepts 1/0, true/false, yes/no, on/off (any case).
Result<std::optional<bool>> env_bool(const char* name);

// Parses text as the given type with the same rules as the env_* readers.
Result<int64_t> parse_int(std::string_view text);
Result<double> parse_double(std::string_view text);
Result<bool> parse_bool(std::string_view text);

// Where this process sits in a multi-process launch. Read, in order of precedence, from
// HIVEMIND_* (set by slurm/srun-wrap.sh or our own --spawn), OpenMPI (OMPI_COMM_WORLD_*), PMIx
// (PMIX_RANK), Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID) and torchrun (RANK,
// ...).
struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int node_rank = 0;
  // Which launcher the values came from: "hivemind", "openmpi", "pmix", "slurm", "torchrun" or
  // "none".
  std::string source = "none";
  bool launched() const { return source != "none"; }
};
Result<LaunchInfo> read_launch_info();

// The short host name (up to the first dot), as Slurm's node names use it.
std::string short_hostname();

}  // namespace hivemind
