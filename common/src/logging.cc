#include <algorithm>
#include <cctype>
#include <mutex>
#include <unordered_map>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <hivemind/common/env.h>
#include <hivemind/common/logging.h>

namespace hivemind {
namespace {

struct LoggingState {
  std::mutex mutex;
  LogOptions options;
  std::vector<spdlog::sink_ptr> sinks;
  std::unordered_map<std::string, std::shared_ptr<spdlog::logger>> loggers;
};

LoggingState& state() {
  static LoggingState s;  // never destroyed before loggers used from static destructors
  return s;
}

std::string pattern_for(const LogOptions& options) {
  std::string prefix;
  if (options.rank) {
    prefix = "[rank " + std::to_string(*options.rank) + "@" + options.host + "] ";
  }
  // 2026-11-26 22:16:13.123 [rank 3@node01] [transport] [warn] message
  return "%Y-%m-%d %H:%M:%S.%e " + prefix + "[%n] [%l] %v";
}

std::vector<spdlog::sink_ptr> make_sinks(const LogOptions& options) {
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  if (!options.file.empty()) {
    sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file));
  }
  return sinks;
}

void apply(spdlog::logger& logger, const LoggingState& s) {
  logger.sinks() = s.sinks;
  logger.set_level(s.options.level);
  logger.set_pattern(pattern_for(s.options));
  logger.flush_on(spdlog::level::warn);
}

}  // namespace

void configure_logging(const LogOptions& options) {
  auto& s = state();
  std::lock_guard lock(s.mutex);
  s.options = options;
  s.sinks = make_sinks(options);
  for (auto& [name, logger] : s.loggers)
    apply(*logger, s);
}

void configure_logging_from_env() {
  LogOptions options;
  if (auto level = env_string("HIVEMIND_LOG_LEVEL")) {
    if (auto parsed = parse_log_level(*level)) options.level = *parsed;
  }
  if (auto file = env_string("HIVEMIND_LOG_FILE")) options.file = *file;
  auto launch = read_launch_info();
  if (launch.is_ok() && launch->launched()) {
    options.rank = launch->rank;
    options.host = short_hostname();
  }
  configure_logging(options);
}

std::shared_ptr<spdlog::logger> logger(std::string_view module) {
  auto& s = state();
  std::lock_guard lock(s.mutex);
  auto it = s.loggers.find(std::string(module));
  if (it != s.loggers.end()) return it->second;
  if (s.sinks.empty()) s.sinks = make_sinks(s.options);
  auto created = std::make_shared<spdlog::logger>(std::string(module));
  apply(*created, s);
  s.loggers.emplace(std::string(module), created);
  return created;
}

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "trace") return spdlog::level::trace;
  if (lower == "debug") return spdlog::level::debug;
  if (lower == "info") return spdlog::level::info;
  if (lower == "warn" || lower == "warning") return spdlog::level::warn;
  if (lower == "error") return spdlog::level::err;
  if (lower == "critical") return spdlog::level::critical;
  if (lower == "off") return spdlog::level::off;
  return std::nullopt;
}

}  // namespace hivemind
