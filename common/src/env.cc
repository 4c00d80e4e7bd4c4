#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <string>

#include <unistd.h>

#include <hivemind/common/env.h>

namespace hivemind {

std::string env_name_for_flag(std::string_view flag) {
  std::string name = "HIVEMIND_";
  size_t start = flag.find_first_not_of('-');  // tolerate "--max_batch_size"
  for (char c : flag.substr(start == std::string_view::npos ? flag.size() : start)) {
    name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return name;
}

std::optional<std::string> env_string(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

static std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  return text;
}

Result<int64_t> parse_int(std::string_view text) {
  text = trim(text);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return invalid_argument_error("'" + std::string(text) + "' is not an integer");
  }
  return value;
}

Result<double> parse_double(std::string_view text) {
  text = trim(text);
  std::string copy(
      text);  // strtod needs a terminator; from_chars(double) is missing in older libstdc++
  char* end = nullptr;
  double value = std::strtod(copy.c_str(), &end);
  if (copy.empty() || end != copy.c_str() + copy.size()) {
    return invalid_argument_error("'" + copy + "' is not a number");
  }
  return value;
}

Result<bool> parse_bool(std::string_view text) {
  std::string lower(trim(text));
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "1" || lower == "true" || lower == "yes" || lower == "on") return true;
  if (lower == "0" || lower == "false" || lower == "no" || lower == "off") return false;
  return invalid_argument_error("'" + std::string(text) + "' is not a boolean (use true/false)");
}

template <typename T, typename Parse>
static Result<std::optional<T>> env_typed(const char* name, Parse parse) {
  auto text = env_string(name);
  if (!text) return std::optional<T>();
  auto parsed = parse(*text);
  if (!parsed.is_ok())
    return parsed.status().with_context(std::string("environment variable ") + name);
  return std::optional<T>(*parsed);
}

Result<std::optional<int64_t>> env_int(const char* name) {
  return env_typed<int64_t>(name, parse_int);
}
Result<std::optional<double>> env_double(const char* name) {
  return env_typed<double>(name, parse_double);
}
Result<std::optional<bool>> env_bool(const char* name) {
  return env_typed<bool>(name, parse_bool);
}

namespace {

struct LauncherVariables {
  const char* source;
  const char* rank;
  const char* world_size;
  const char* local_rank;
  const char* node_rank;
};

// Most specific first: our own variables (set by srun-wrap.sh / --spawn) override what the launcher
// set.
constexpr LauncherVariables kLaunchers[] = {
    {"hivemind", "HIVEMIND_RANK", "HIVEMIND_WORLD_SIZE", "HIVEMIND_LOCAL_RANK",
     "HIVEMIND_NODE_RANK"},
    // OMPI_COMM_WORLD_NODE_RANK is a rank *within* the node, not a node index: the node index is
    // derived from the local size below (right for mpirun's default by-slot mapping).
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     nullptr},
    {"pmix", "PMIX_RANK", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_NODEID"},
    // Inside a step SLURM_STEP_NUM_TASKS is the step's size; SLURM_NTASKS is the job's.
    {"slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_NODEID"},
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "GROUP_RANK"},
};

Result<int> read_rank_variable(const char* name, int fallback, int min_value) {
  HIVEMIND_ASSIGN_OR_RETURN(auto value, env_int(name));
  if (!value) return fallback;
  if (*value < min_value || *value > INT_MAX) {
    return invalid_argument_error(std::string("environment variable ") + name + "=" +
                                  std::to_string(*value) + " is out of range");
  }
  return static_cast<int>(*value);
}

}  // namespace

Result<LaunchInfo> read_launch_info() {
  for (const auto& launcher : kLaunchers) {
    if (!env_string(launcher.rank)) continue;
    LaunchInfo info;
    info.source = launcher.source;
    HIVEMIND_ASSIGN_OR_RETURN(info.rank, read_rank_variable(launcher.rank, 0, 0));
    int world_fallback = info.rank + 1;
    bool slurm_sizes =
        std::string(launcher.source) == "slurm" || std::string(launcher.source) == "pmix";
    if (slurm_sizes && !env_string(launcher.world_size)) {
      HIVEMIND_ASSIGN_OR_RETURN(world_fallback,
                                read_rank_variable("SLURM_NTASKS", world_fallback, 1));
    }
    HIVEMIND_ASSIGN_OR_RETURN(info.world_size,
                              read_rank_variable(launcher.world_size, world_fallback, 1));
    HIVEMIND_ASSIGN_OR_RETURN(info.local_rank, read_rank_variable(launcher.local_rank, 0, 0));
    if (launcher.node_rank != nullptr) {
      HIVEMIND_ASSIGN_OR_RETURN(info.node_rank, read_rank_variable(launcher.node_rank, 0, 0));
    } else {
      HIVEMIND_ASSIGN_OR_RETURN(int local_size,
                                read_rank_variable("OMPI_COMM_WORLD_LOCAL_SIZE", 0, 0));
      info.node_rank = local_size > 0 ? info.rank / local_size : 0;
    }
    if (info.rank >= info.world_size) {
      return invalid_argument_error("rank " + std::to_string(info.rank) + " from " + launcher.rank +
                                    " is not below the world size " +
                                    std::to_string(info.world_size));
    }
    return info;
  }
  return LaunchInfo{};
}

std::string short_hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  std::string host(name);
  return host.substr(0, host.find('.'));
}

}  // namespace hivemind
