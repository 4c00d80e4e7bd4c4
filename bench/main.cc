// hivemind-bench <name> [--json] [options]
// Lists the benchmarks this build has when called without a name.
#include <cstdio>
#include <map>
#include <string>

#include <hivemind/common/logging.h>
#include <hivemind/common/version.h>

#include "support/report.h"

namespace hivemind::bench {
std::map<std::string, std::pair<std::string, BenchFunction>>& registry();
}

int main(int argc, char** argv) {
  using namespace hivemind::bench;
  hivemind::configure_logging_from_env();
  auto& benches = registry();
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::printf("%s\n", hivemind::version_line("hivemind-bench").c_str());
    return 0;
  }
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::printf(
        "usage: hivemind-bench <name> [--json] [options] | --version\n\nbenchmarks in this "
        "build:\n");
    for (const auto& [name, entry] : benches) {
      std::printf("  %-12s %s\n", name.c_str(), entry.first.c_str());
    }
    if (benches.empty()) std::printf("  (none)\n");
    std::printf(
        "\nEach measures its baseline in the same run and prints the ratio; --json prints one\n"
        "object per measurement. Options of a benchmark: hivemind-bench <name> --help.\n");
    return argc < 2 ? 2 : 0;
  }
  auto it = benches.find(argv[1]);
  if (it == benches.end()) {
    std::fprintf(stderr,
                 "hivemind-bench: unknown benchmark '%s' (run without arguments for the list)\n",
                 argv[1]);
    return 2;
  }
  Args args;
  bool json = false;
  for (int i = 2; i < argc; ++i) {
    std::string value = argv[i];
    if (value == "--json")
      json = true;
    else
      args.values.push_back(value);
  }
  Reporter reporter(it->first, json);
  return it->second.second(args, reporter);
}
