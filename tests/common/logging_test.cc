#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <stdlib.h>

#include <hivemind/common/logging.h>

namespace hivemind {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(LoggingTest, ModuleLoggersAreSharedByName) {
  EXPECT_EQ(logger("dht").get(), logger("dht").get());
  EXPECT_NE(logger("dht").get(), logger("transport").get());
  EXPECT_EQ(logger("dht")->name(), "dht");
}

TEST(LoggingTest, RankAndHostPrefixReachesFile) {
  std::string path = std::filesystem::temp_directory_path() /
                     ("hivemind_logging_test_" + std::to_string(::getpid()) + ".log");
  LogOptions options;
  options.level = spdlog::level::info;
  options.rank = 3;
  options.host = "node07";
  options.file = path;
  configure_logging(options);
  logger("transport")->info("hello {}", 42);
  logger("transport")->debug("below the level");
  logger("transport")->flush();

  std::string text = read_file(path);
  EXPECT_NE(text.find("[rank 3@node07] [transport] [info] hello 42"), std::string::npos) << text;
  EXPECT_EQ(text.find("below the level"), std::string::npos);

  LogOptions quiet;
  quiet.level = spdlog::level::warn;
  configure_logging(quiet);
  std::filesystem::remove(path);
}

TEST(LoggingTest, ParsesLevels) {
  EXPECT_EQ(parse_log_level("WARN"), spdlog::level::warn);
  EXPECT_EQ(parse_log_level("debug"), spdlog::level::debug);
  EXPECT_EQ(parse_log_level("loud"), std::nullopt);
}

TEST(LoggingTest, ParsesOneLevelForEveryModule) {
  LogOptions options;
  ASSERT_TRUE(parse_log_levels("Debug", options).is_ok());
  EXPECT_EQ(options.level, spdlog::level::debug);
  EXPECT_TRUE(options.module_levels.empty());
}

TEST(LoggingTest, ParsesPerModuleLevels) {
  LogOptions options;
  ASSERT_TRUE(parse_log_levels("info,dht=debug,transport=warn", options).is_ok());
  EXPECT_EQ(options.level, spdlog::level::info);
  EXPECT_EQ(options.module_levels.size(), 2u);
  EXPECT_EQ(options.module_levels.at("dht"), spdlog::level::debug);
  EXPECT_EQ(options.module_levels.at("transport"), spdlog::level::warn);

  // A module's level holds wherever the bare level stands; a later item for the same module wins.
  LogOptions reordered;
  ASSERT_TRUE(parse_log_levels("dht=trace,error,dht=off", reordered).is_ok());
  EXPECT_EQ(reordered.level, spdlog::level::err);
  EXPECT_EQ(reordered.module_levels.at("dht"), spdlog::level::off);

  LogOptions only_module;  // the others keep the default
  ASSERT_TRUE(parse_log_levels("runtime=debug", only_module).is_ok());
  EXPECT_EQ(only_module.level, spdlog::level::info);
  EXPECT_EQ(only_module.module_levels.at("runtime"), spdlog::level::debug);
}

TEST(LoggingTest, RejectsMalformedLevelsNamingTheBadItem) {
  struct Case {
    const char* spec;
    const char* named;  // what the message must name
  };
  for (const Case& c :
       {Case{"loud", "unknown level 'loud'"},
        Case{"info,dht=loud", "unknown level 'loud' in 'dht=loud'"},
        Case{"info,dhtt=debug", "unknown module 'dhtt' in 'dhtt=debug'"},
        Case{"=debug", "unknown module '' in '=debug'"}, Case{"info,,dht=debug", "an empty item"},
        Case{"info,", "an empty item"}, Case{"", "an empty item"}}) {
    LogOptions options;
    options.level = spdlog::level::critical;
    Status status = parse_log_levels(c.spec, options);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << c.spec;
    EXPECT_NE(status.message().find(c.named), std::string::npos)
        << c.spec << ": " << status.message();
    EXPECT_EQ(options.level, spdlog::level::critical) << c.spec << ": options left unchanged";
    EXPECT_TRUE(options.module_levels.empty()) << c.spec;
  }
}

TEST(LoggingTest, ModuleLevelsReachTheModuleLoggers) {
  LogOptions options;
  ASSERT_TRUE(parse_log_levels("warn,dht=debug", options).is_ok());
  configure_logging(options);
  EXPECT_EQ(logger("dht")->level(), spdlog::level::debug);
  EXPECT_EQ(logger("transport")->level(), spdlog::level::warn);
  EXPECT_EQ(logger("quant")->level(), spdlog::level::warn);  // created after configure_logging

  LogOptions quiet;
  quiet.level = spdlog::level::warn;
  configure_logging(quiet);
  EXPECT_EQ(logger("dht")->level(), spdlog::level::warn);
}

TEST(LoggingTest, EnvironmentErrorNamesTheVariable) {
  ::setenv("HIVEMIND_LOG_LEVEL", "info,dht=chatty", 1);
  Status status = configure_logging_from_env();
  ::unsetenv("HIVEMIND_LOG_LEVEL");
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("HIVEMIND_LOG_LEVEL"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("unknown level 'chatty' in 'dht=chatty'"), std::string::npos)
      << status.message();

  ::setenv("HIVEMIND_LOG_LEVEL", "warn,transport=error", 1);
  status = configure_logging_from_env();
  ::unsetenv("HIVEMIND_LOG_LEVEL");
  EXPECT_TRUE(status.is_ok()) << status.to_string();
  EXPECT_EQ(logger("transport")->level(), spdlog::level::err);
  EXPECT_EQ(logger("dht")->level(), spdlog::level::warn);
}

}  // namespace
}  // namespace hivemind
