// The command line of hivemind-bench: `hivemind-bench <name> [--json] [options]`.
#pragma once

namespace hivemind::bench {

// Runs the benchmark argv[1] names with the options after it, parsed by CLI11 against the options
// that benchmark declares. Returns its exit code; 2 for a usage error (no name, an unknown
// benchmark, an option it does not declare, a value that does not parse), after a message on
// stderr naming what was wrong.
int run_command_line(int argc, char** argv);

}  // namespace hivemind::bench
