// The --swarm_key_file flag of the programs that do not carry transport options themselves
// (hivemind-dht, hivemind-demo, examples/trainer): the flag is HIVEMIND_SWARM_KEY_FILE, so every
// Context of the process — including those the DHT and the client create — uses the key.
#pragma once

#include <string>

#include <hivemind/common/status.h>

namespace hivemind::transport {

// Checks the key file now (SwarmKey::load), so a bad one stops the program at start naming it and
// the fix, then sets HIVEMIND_SWARM_KEY_FILE. Call before any thread starts. Empty: no-op.
Status adopt_swarm_key_file(const std::string& path);

}  // namespace hivemind::transport
