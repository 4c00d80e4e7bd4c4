// Logging on spdlog: one named logger per module, one process-wide format.
//
// In multi-process runs every line carries the rank and host (set by configure_logging from the
// launcher environment), so interleaved logs of a Slurm job can be told apart.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace hivemind {

struct LogOptions {
  spdlog::level::level_enum level = spdlog::level::info;
  // Prefix every line with "[rank R@host]". Filled from the launcher environment when unset.
  std::optional<int> rank;
  std::string host;
  // When not empty, log to this file as well as to stderr.
  std::string file;
};

// Applies `options` to every existing and future module logger. Safe to call more than once.
void configure_logging(const LogOptions& options);

// Reads HIVEMIND_LOG_LEVEL (trace, debug, info, warn, error, off) and the launcher's rank
// variables, then calls configure_logging. What programs call first in main().
void configure_logging_from_env();

// The logger of one module ("transport", "dht", ...), created on first use with the current
// settings.
std::shared_ptr<spdlog::logger> logger(std::string_view module);

// Parses a level name; nullopt for an unknown one.
std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

}  // namespace hivemind
