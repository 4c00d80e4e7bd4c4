// The main() of every test binary: quiet logs unless HIVEMIND_LOG_LEVEL asks otherwise.
#include <cstdio>

#include <gtest/gtest.h>

#include <hivemind/common/env.h>
#include <hivemind/common/logging.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  hivemind::LogOptions options;
  options.level = spdlog::level::warn;
  if (auto spec = hivemind::env_string("HIVEMIND_LOG_LEVEL")) {
    hivemind::Status parsed = hivemind::parse_log_levels(*spec, options);
    if (!parsed.is_ok()) {
      std::fprintf(stderr, "environment variable HIVEMIND_LOG_LEVEL='%s': %s\n", spec->c_str(),
                   parsed.to_string().c_str());
      return 2;
    }
  }
  hivemind::configure_logging(options);
  return RUN_ALL_TESTS();
}
