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

spdlog::level::level_enum level_of(std::string_view module, const LogOptions& options) {
  auto it = options.module_levels.find(module);
  return it != options.module_levels.end() ? it->second : options.level;
}

void apply(spdlog::logger& logger, const LoggingState& s) {
  logger.sinks() = s.sinks;
  logger.set_level(level_of(logger.name(), s.options));
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

Status configure_logging_from_env() {
  LogOptions options;
  if (auto spec = env_string("HIVEMIND_LOG_LEVEL")) {
    Status parsed = parse_log_levels(*spec, options);
    if (!parsed.is_ok())
      return parsed.with_context("environment variable HIVEMIND_LOG_LEVEL='" + *spec + "'");
  }
  if (auto file = env_string("HIVEMIND_LOG_FILE")) options.file = *file;
  auto launch = read_launch_info();
  if (launch.is_ok() && launch->launched()) {
    options.rank = launch->rank;
    options.host = short_hostname();
  }
  configure_logging(options);
  return Status();
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

std::span<const std::string_view> log_modules() {
  static constexpr std::string_view kModules[] = {
      // libraries
      "common", "transport", "quant", "dht", "protocol", "averaging", "runtime", "server", "client",
      // programs and test harnesses
      "demo", "bench", "multinode", "soak"};
  return kModules;
}

Status parse_log_levels(std::string_view spec, LogOptions& options) {
  LogOptions parsed = options;
  for (std::string_view rest = spec;;) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const size_t equals = item.find('=');
    const std::string_view module =
        equals == std::string_view::npos ? std::string_view() : item.substr(0, equals);
    const std::string_view level_name =
        equals == std::string_view::npos ? item : item.substr(equals + 1);
    if (item.empty())
      return invalid_argument_error("an empty item (expected LEVEL or MODULE=LEVEL)");
    auto level = parse_log_level(level_name);
    if (!level) {
      return invalid_argument_error("unknown level '" + std::string(level_name) + "' in '" +
                                    std::string(item) +
                                    "' (trace, debug, info, warn, error, critical, off)");
    }
    if (equals == std::string_view::npos) {
      parsed.level = *level;
    } else {
      auto modules = log_modules();
      if (std::find(modules.begin(), modules.end(), module) == modules.end()) {
        std::string known;
        for (std::string_view m : modules)
          known += (known.empty() ? "" : ", ") + std::string(m);
        return invalid_argument_error("unknown module '" + std::string(module) + "' in '" +
                                      std::string(item) + "' (modules: " + known + ")");
      }
      parsed.module_levels[std::string(module)] = *level;
    }
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  options = std::move(parsed);
  return Status();
}

}  // namespace hivemind
