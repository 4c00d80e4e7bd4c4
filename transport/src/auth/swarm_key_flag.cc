#include <cstdlib>

#include <hivemind/transport/swarm_key.h>
#include <hivemind/transport/swarm_key_flag.h>

namespace hivemind::transport {

Status adopt_swarm_key_file(const std::string& path) {
  if (path.empty()) return Status::ok();
  auto key = SwarmKey::load(path);
  if (!key.is_ok()) return key.status().with_context("--swarm_key_file");
  if (::setenv("HIVEMIND_SWARM_KEY_FILE", path.c_str(), 1) != 0)
    return errno_error("setenv HIVEMIND_SWARM_KEY_FILE", errno);
  return Status::ok();
}

}  // namespace hivemind::transport
