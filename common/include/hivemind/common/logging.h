// Logging on spdlog: one named logger per module, one process-wide format.
//
// In multi-process runs every line carries the rank and host (set by configure_logging from the
// launcher environment), so interleaved logs of a Slurm job can be told apart.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include <hivemind/common/status.h>

namespace hivemind {

struct LogOptions {
  // The level of every module without one of its own in module_levels.
  spdlog::level::level_enum level = spdlog::level::info;
  std::map<std::string, spdlog::level::level_enum, std::less<>> module_levels;
  // Prefix every line with "[rank R@host]". Filled from the launcher environment when unset.
  std::optional<int> rank;
  std::string host;
  // When not empty, log to this file as well as to stderr.
  std::string file;
};

// Applies `options` to every existing and future module logger. Safe to call more than once.
void configure_logging(const LogOptions& options);

// Reads HIVEMIND_LOG_LEVEL (see parse_log_levels), HIVEMIND_LOG_FILE and the launcher's rank
// variables, then calls configure_logging. What programs call first in main(); a malformed
// HIVEMIND_LOG_LEVEL is an InvalidArgument error naming the variable and the bad item, and leaves
// the logging as it was.
Status configure_logging_from_env();

// The logger of one module ("transport", "dht", ...), created on first use with the current
// settings.
std::shared_ptr<spdlog::logger> logger(std::string_view module);

// The module loggers of this project, the names a per-module level may use: the library modules,
// the programs and the test harnesses.
std::span<const std::string_view> log_modules();

// Parses a level name (trace, debug, info, warn or warning, error, critical, off; any case);
// nullopt for an unknown one.
std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

// Parses HIVEMIND_LOG_LEVEL's syntax into `level` and `module_levels` of a LogOptions: a
// comma-separated list of items, each LEVEL (every module) or MODULE=LEVEL (one module of
// log_modules()), e.g. "info,dht=debug,transport=warn". A module's own level holds wherever the
// bare LEVEL stands in the list (as RUST_LOG reads it); a later item overrides an earlier one of
// the same kind. An empty item, an unknown level or an unknown module is an InvalidArgument error
// naming the item; `options` is then left unchanged.
Status parse_log_levels(std::string_view spec, LogOptions& options);

}  // namespace hivemind
