// Fuzz target for the averaging matchmaking decoders (join request, group, join reply, member
// info).
//
// Every input is decoded under small limits (so limit checks are reached) and default ones; what
// decodes must re-encode to the same bytes and decode again, and a decoded group must satisfy what
// the decoder promises (self among the members, the backend listed by each).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <hivemind/averaging/group_wire.h>

namespace {

using namespace hivemind::averaging;

template <typename Decode, typename Encode>
void check_round_trip(std::span<const uint8_t> input, const GroupWireLimits& limits, Decode decode,
                      Encode encode) {
  auto decoded = decode(input, limits);
  if (!decoded.is_ok()) return;
  auto encoded = encode(*decoded);
  if (std::vector<uint8_t>(input.begin(), input.end()) != encoded) __builtin_trap();
  if (!decode(encoded, limits).is_ok()) __builtin_trap();
}

void check_group(std::span<const uint8_t> input, const GroupWireLimits& limits) {
  auto group = decode_group(input, limits);
  if (!group.is_ok()) return;
  if (group->members.empty() || group->self >= group->members.size()) __builtin_trap();
  for (const auto& member : group->members) {
    if (std::find(member.backends.begin(), member.backends.end(), group->backend) ==
        member.backends.end())
      __builtin_trap();
  }
}

void check_all(std::span<const uint8_t> input, const GroupWireLimits& limits) {
  check_round_trip(input, limits, decode_member_info, encode_member_info);
  check_round_trip(input, limits, decode_join_request, encode_join_request);
  check_round_trip(input, limits, decode_group, encode_group);
  check_group(input, limits);
  auto reply = decode_join_reply(input, limits);
  if (reply.is_ok()) {
    auto encoded = std::holds_alternative<Group>(*reply)
                       ? encode_group(std::get<Group>(*reply))
                       : encode_join_refusal(std::get<JoinRefusal>(*reply));
    if (std::vector<uint8_t>(input.begin(), input.end()) != encoded) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);
  GroupWireLimits small;
  small.max_key_bytes = 16;
  small.max_endpoint_bytes = 24;
  small.max_backends = 2;
  small.max_backend_name_bytes = 9;
  small.max_device_id_bytes = 8;
  small.max_members = 4;
  small.max_tensors = 4;
  small.max_setup_bytes = 16;
  small.max_message_bytes = 16;
  check_all(input, small);
  check_all(input, GroupWireLimits{});
  return 0;
}
