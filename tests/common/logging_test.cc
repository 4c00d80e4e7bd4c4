#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace hivemind
