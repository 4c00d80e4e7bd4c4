// hivemind-bench <name> [--json] [options]
// Lists the benchmarks this build has when called without a name.
#include <cstdio>
#include <string_view>

#include <hivemind/common/logging.h>
#include <hivemind/common/version.h>

#include "support/command_line.h"

int main(int argc, char** argv) {
  if (argc == 2 && std::string_view(argv[1]) == "--version") {
    std::printf("%s\n", hivemind::version_line("hivemind-bench").c_str());
    return 0;
  }
  if (hivemind::Status logging = hivemind::configure_logging_from_env(); !logging.is_ok()) {
    std::fprintf(stderr, "hivemind-bench: %s\n", logging.to_string().c_str());
    return 2;
  }
  return hivemind::bench::run_command_line(argc, argv);
}
