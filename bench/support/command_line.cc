#include "support/command_line.h"

#include <cstdio>
#include <string>

#include "support/report.h"

namespace hivemind::bench {

int run_command_line(int argc, char** argv) {
  const auto& all = benches();
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::printf(
        "usage: hivemind-bench <name> [--json] [options] | --version\n\nbenchmarks in this "
        "build:\n");
    for (const auto& [name, entry] : all) {
      std::printf("  %-12s %s\n", name.c_str(), entry.description.c_str());
    }
    if (all.empty()) std::printf("  (none)\n");
    std::printf(
        "\nEach measures its baseline in the same run and prints the ratio; --json prints one\n"
        "object per measurement. Options of a benchmark: hivemind-bench <name> --help.\n");
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  auto it = all.find(name);
  if (it == all.end()) {
    std::fprintf(stderr,
                 "hivemind-bench: unknown benchmark '%s' (run without arguments for the list)\n",
                 name.c_str());
    return 2;
  }
  // The benchmark's own command line: its name stands where CLI11 expects the program's.
  CLI::App cli{it->second.description, "hivemind-bench " + name};
  bool json = false;
  cli.add_flag("--json", json,
               "one JSON object per measurement on stdout; notes for people go to stderr");
  BenchRun run = it->second.setup(cli);
  try {
    cli.parse(argc - 1, argv + 1);
  } catch (const CLI::Success& help) {  // --help
    return cli.exit(help);
  } catch (const CLI::ParseError& error) {
    std::fprintf(stderr, "hivemind-bench %s: %s (options: hivemind-bench %s --help)\n",
                 name.c_str(), error.what(), name.c_str());
    return 2;
  }
  Reporter reporter(name, json);
  return run(reporter);
}

}  // namespace hivemind::bench
