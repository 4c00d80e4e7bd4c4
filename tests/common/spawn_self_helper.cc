// A program with a `--spawn N` flag, for spawn_test: with the flag it launches N copies of itself;
// as a rank it writes "<rank> <world> <args...>" to <dir>/rank-<rank>.txt and exits with the code
// given by --fail-rank R (rank R exits 3, the others 0).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include <hivemind/common/env.h>
#include <hivemind/common/spawn.h>

int main(int argc, char** argv) {
  auto spawned = hivemind::maybe_spawn_self(
      argc, argv, hivemind::Deadline::after(hivemind::Milliseconds(60'000)));
  if (!spawned.is_ok()) {
    std::fprintf(stderr, "%s\n", spawned.status().to_string().c_str());
    return 2;
  }
  if (*spawned) return **spawned;

  auto launch = hivemind::read_launch_info();
  if (!launch.is_ok() || argc < 2) return 2;
  std::string dir = argv[1];
  int fail_rank = -1;
  std::string args;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--fail-rank") == 0 && i + 1 < argc)
      fail_rank = std::atoi(argv[i + 1]);
    args += std::string(" ") + argv[i];
  }
  std::ofstream(dir + "/rank-" + std::to_string(launch->rank) + ".txt")
      << launch->rank << " " << launch->world_size << args << "\n";
  return launch->rank == fail_rank ? 3 : 0;
}
