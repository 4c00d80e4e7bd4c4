// hivemind-bench <name> [--json] [options]
// Lists the benchmarks this build has when called without a name.
#include <hivemind/common/logging.h>

#include "support/command_line.h"

int main(int argc, char** argv) {
  hivemind::configure_logging_from_env();
  return hivemind::bench::run_command_line(argc, argv);
}
