// Fuzz target for the DHT wire decoder and the node's request path.
//
// Every input is decoded under small limits (so limit checks are reached) and default ones; what
// decodes must re-encode to the same bytes and decode again. Then the node serves the input as a
// request: whatever comes back must itself be a valid frame. Expert-registry values are parsed too.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <hivemind/dht/expert_registry.h>
#include <hivemind/dht/node.h>
#include <hivemind/dht/wire.h>

namespace {

using namespace hivemind;
using namespace hivemind::dht;

class NullNetwork final : public NodeNetwork {
 public:
  void send_request(const std::string&, uint64_t, std::vector<uint8_t>, SteadyTime) override {}
};

void check_round_trip(std::span<const uint8_t> input, const WireLimits& limits) {
  auto decoded = wire::decode(input, limits);
  if (!decoded.is_ok()) return;
  auto encoded = wire::encode(*decoded);
  if (std::vector<uint8_t>(input.begin(), input.end()) != encoded) __builtin_trap();
  if (!wire::decode(encoded, limits).is_ok()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);
  WireLimits small;
  small.max_frame_bytes = 4096;
  small.max_keys_per_request = 4;
  small.max_value_bytes = 64;
  small.max_subkey_bytes = 8;
  small.max_subkeys_per_key = 4;
  small.max_contacts_per_reply = 3;
  small.max_address_bytes = 40;
  small.max_error_bytes = 16;
  check_round_trip(input, small);
  check_round_trip(input, WireLimits{});
  (void)wire::decode_header(input, WireLimits{});

  // Limits that never refuse, so every input reaches the handlers (rate limiting and clock skew
  // have unit tests of their own).
  static NodeOptions options = [] {
    NodeOptions o;
    o.rate.per_peer_per_second = o.rate.global_per_second = 1e12;
    o.max_clock_skew = std::chrono::hours(24 * 365 * 100);
    return o;
  }();
  static ManualClock clock(1'700'000'000'000);
  static NullNetwork network;
  static Node node(options, Contact{NodeId::from_key("fuzz"), "tcp://10.0.0.1:21000"}, clock,
                   network, 1);
  auto reply = node.handle_request(input);
  if (!wire::decode(reply, NodeOptions{}.wire).is_ok()) __builtin_trap();

  (void)decode_expert_address(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
