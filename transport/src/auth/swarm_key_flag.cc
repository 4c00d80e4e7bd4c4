#include <cstdlib>

#include <hivemind/transport/swarm_key.h>
#include <hivemind/transport/swarm_key_flag.h>

namespace hivemind::transport {

Status adopt_swarm_key_file(const std::string& path) {
  if (path.empty()) return Status::ok();
  auto key = SwarmKey::load(path);
  if (!key.is_ok()) return key.status().with_context("--swarm_key_file");
  // The variable, not a process-wide setting of our own, so that child processes (a benchmark's
  // clients, anything a trainer script launches) join with the same key. setenv races only with a
  // concurrent getenv: the contract (the header) is a call from main() before any thread starts.
  // NOLINTNEXTLINE(concurrency-mt-unsafe)
  if (::setenv("HIVEMIND_SWARM_KEY_FILE", path.c_str(), 1) != 0)
    return errno_error("setenv HIVEMIND_SWARM_KEY_FILE", errno);
  return Status::ok();
}

}  // namespace hivemind::transport
