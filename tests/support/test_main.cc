// The main() of every test binary: quiet logs unless HIVEMIND_LOG_LEVEL asks otherwise.
#include <gtest/gtest.h>

#include <hivemind/common/env.h>
#include <hivemind/common/logging.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  hivemind::LogOptions options;
  options.level = spdlog::level::warn;
  if (auto level = hivemind::env_string("HIVEMIND_LOG_LEVEL")) {
    if (auto parsed = hivemind::parse_log_level(*level)) options.level = *parsed;
  }
  hivemind::configure_logging(options);
  return RUN_ALL_TESTS();
}
