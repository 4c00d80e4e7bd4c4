// The matchmaking messages: a member's join request and the group the leader sends back, and the
// MemberInfo a member declares in the DHT. Byte layout: docs/wire-formats.md, "Averaging groups".
//
// Every decoder checks each length and count against its limit and against the bytes left before
// it sizes anything from it, so a hostile or broken peer can never make this process allocate more
// than the message it actually sent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <hivemind/averaging/group.h>
#include <hivemind/averaging/tensor_ref.h>
#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/quant/types.h>

namespace hivemind::averaging {

// The rpc method a leader serves joins of `key` on. One method per key, so averagers of several
// keys can share one rpc server.
std::string join_method(std::string_view key);
// The method an averager of `key` answers with an empty message while it is open: a leader asks the
// candidates that have not joined yet whether anyone still averages there.
std::string alive_method(std::string_view key);

// What one tensor of a member looks like; every member of a group must bring the same list.
struct TensorShape {
  quant::DType dtype = quant::DType::kFloat32;
  uint64_t elements = 0;
  friend bool operator==(const TensorShape&, const TensorShape&) = default;
};

std::vector<TensorShape> tensor_shapes(std::span<const TensorRef> tensors);

// Why two members' tensors cannot be averaged together ("tensor 3 has 10 float32 elements here
// but 12 float32 at the leader"), or "" when they match.
std::string describe_shape_mismatch(std::span<const TensorShape> mine,
                                    std::span<const TensorShape> leaders);

struct JoinRequest {
  std::string key;
  MemberInfo member;
  std::vector<TensorShape> tensors;
  // The last round the joiner took part in (0: none). The leader numbers its round above every
  // member's last one, so no member ever sees one round number twice, whoever led before.
  uint64_t last_round = 0;
  // How long the joiner waits for the group from now; the leader drops the join after that.
  Milliseconds wait{0};
};

// Why a leader did not take a join; the join's reply carries it instead of a group.
struct JoinRefusal {
  enum class Reason : uint8_t {
    kLate = 1,        // the round was already formed: try the next one
    kMismatch = 2,    // the joiner's key or tensors differ from the leader's
    kClosed = 3,      // the leader's averager is closing
    kNotLeader = 4,   // the member asked follows another leader this round
    kSuperseded = 5,  // the same member joined again; this older join is dropped
  };
  Reason reason = Reason::kLate;
  std::string message;
};

struct GroupWireLimits {
  size_t max_key_bytes = 80;  // the DHT's key limit
  size_t max_endpoint_bytes = 256;
  size_t max_backends = 8;
  size_t max_backend_name_bytes = 32;
  size_t max_device_id_bytes = 128;
  size_t max_members = 1024;
  size_t max_tensors = 65536;
  size_t max_setup_bytes = 4096;
  size_t max_message_bytes = 1024;
};

std::vector<uint8_t> encode_member_info(const MemberInfo& member);
Result<MemberInfo> decode_member_info(std::span<const uint8_t> bytes,
                                      const GroupWireLimits& limits = {});

std::vector<uint8_t> encode_join_request(const JoinRequest& request);
Result<JoinRequest> decode_join_request(std::span<const uint8_t> bytes,
                                        const GroupWireLimits& limits = {});

// The group as member `group.self` receives it.
std::vector<uint8_t> encode_group(const Group& group);
// Also checks what makes a group usable: at least one member, `self` among them, no endpoint twice,
// and the backend listed by every member.
Result<Group> decode_group(std::span<const uint8_t> bytes, const GroupWireLimits& limits = {});

// A join's reply is either the group (encode_group) or a refusal.
std::vector<uint8_t> encode_join_refusal(const JoinRefusal& refusal);
Result<std::variant<Group, JoinRefusal>> decode_join_reply(std::span<const uint8_t> bytes,
                                                           const GroupWireLimits& limits = {});

}  // namespace hivemind::averaging
