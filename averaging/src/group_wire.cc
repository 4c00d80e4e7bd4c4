#include <algorithm>
#include <optional>
#include <set>

#include <fmt/format.h>

#include <hivemind/averaging/group_wire.h>
#include <hivemind/common/byte_order.h>

namespace hivemind::averaging {
namespace {

constexpr uint8_t kMagic0 = 'H';
constexpr uint8_t kMagic1 = 'A';
constexpr uint8_t kVersion = 1;

enum class MessageType : uint8_t { kMember = 1, kJoin = 2, kGroup = 3, kRefusal = 4 };

std::string_view type_name(MessageType type) {
  switch (type) {
    case MessageType::kMember:
      return "member info";
    case MessageType::kJoin:
      return "join request";
    case MessageType::kGroup:
      return "group";
    case MessageType::kRefusal:
      return "join refusal";
  }
  return "?";
}

void write_header(ByteWriter& out, MessageType type) {
  out.u8(kMagic0);
  out.u8(kMagic1);
  out.u8(kVersion);
  out.u8(static_cast<uint8_t>(type));
}

void write_bytes(ByteWriter& out, std::string_view text) {
  out.varint(text.size());
  out.raw(text);
}

void write_member(ByteWriter& out, const MemberInfo& member) {
  write_bytes(out, member.endpoint);
  out.varint(member.backends.size());
  for (const auto& backend : member.backends)
    write_bytes(out, backend);
  write_bytes(out, member.device_id);
}

// A decoder over one message: every read names the field it was reading when it fails.
class Decoder {
 public:
  Decoder(std::span<const uint8_t> bytes, MessageType type, const GroupWireLimits& limits)
      : reader_(bytes), type_(type), limits_(limits) {}

  // The header, accepting `alternative` as the type too; `type_` becomes the one found.
  Status header(std::optional<MessageType> alternative = std::nullopt) {
    uint8_t magic0 = 0, magic1 = 0, version = 0, type = 0;
    if (!reader_.u8(magic0) || !reader_.u8(magic1) || !reader_.u8(version) || !reader_.u8(type))
      return error("truncated header");
    if (magic0 != kMagic0 || magic1 != kMagic1) return error("bad magic");
    if (version != kVersion) return error(fmt::format("unsupported version {}", version));
    if (alternative && type == static_cast<uint8_t>(*alternative)) type_ = *alternative;
    if (type != static_cast<uint8_t>(type_))
      return error(
          fmt::format("message type {} where {} was expected", type, static_cast<int>(type_)));
    return Status::ok();
  }

  // A varint length-prefixed string of at most `limit` bytes (checked before copying).
  Status string(std::string_view field, size_t limit, std::string& out) {
    uint64_t size = 0;
    if (!reader_.varint(size)) return error(fmt::format("truncated {} length", field));
    if (size > limit)
      return error(fmt::format("{} of {} bytes exceeds the limit of {}", field, size, limit));
    if (!reader_.string(static_cast<size_t>(size), out))
      return error(fmt::format("truncated {}", field));
    return Status::ok();
  }

  // A count of items each at least `min_item_bytes` long: refused above `limit` or when the bytes
  // left cannot hold that many, before anything is sized from it.
  Status count(std::string_view field, size_t limit, size_t min_item_bytes, size_t& out) {
    uint64_t n = 0;
    if (!reader_.varint(n)) return error(fmt::format("truncated {} count", field));
    if (n > limit) return error(fmt::format("{} {} exceed the limit of {}", n, field, limit));
    if (n * min_item_bytes > reader_.remaining())
      return error(
          fmt::format("{} {} do not fit in the {} bytes left", n, field, reader_.remaining()));
    out = static_cast<size_t>(n);
    return Status::ok();
  }

  Status member(MemberInfo& out) {
    HIVEMIND_RETURN_IF_ERROR(string("endpoint", limits_.max_endpoint_bytes, out.endpoint));
    if (out.endpoint.empty()) return error("empty member endpoint");
    size_t backends = 0;
    HIVEMIND_RETURN_IF_ERROR(count("backends", limits_.max_backends, 2, backends));
    out.backends.resize(backends);
    for (auto& backend : out.backends) {
      HIVEMIND_RETURN_IF_ERROR(string("backend name", limits_.max_backend_name_bytes, backend));
      if (backend.empty()) return error("empty backend name");
    }
    return string("device id", limits_.max_device_id_bytes, out.device_id);
  }

  Status varint(std::string_view field, uint64_t& out) {
    if (!reader_.varint(out)) return error(fmt::format("truncated {}", field));
    return Status::ok();
  }
  Status u8(std::string_view field, uint8_t& out) {
    if (!reader_.u8(out)) return error(fmt::format("truncated {}", field));
    return Status::ok();
  }
  Status u64(std::string_view field, uint64_t& out) {
    if (!reader_.u64(out)) return error(fmt::format("truncated {}", field));
    return Status::ok();
  }

  Status end() {
    if (!reader_.done()) return error(fmt::format("{} trailing bytes", reader_.remaining()));
    return Status::ok();
  }

  Status error(std::string_view what) const {
    return protocol_error(fmt::format("averaging {}: {}", type_name(type_), what));
  }

  MessageType type() const { return type_; }

 private:
  ByteReader reader_;
  MessageType type_;
  const GroupWireLimits& limits_;
};

}  // namespace

std::string join_method(std::string_view key) {
  return fmt::format("averaging.join:{}", key);
}

std::string alive_method(std::string_view key) {
  return fmt::format("averaging.alive:{}", key);
}

std::vector<TensorShape> tensor_shapes(std::span<const TensorRef> tensors) {
  std::vector<TensorShape> shapes;
  shapes.reserve(tensors.size());
  for (const auto& tensor : tensors)
    shapes.push_back({tensor.dtype, tensor.elements});
  return shapes;
}

std::string describe_shape_mismatch(std::span<const TensorShape> mine,
                                    std::span<const TensorShape> leaders) {
  if (mine.size() != leaders.size()) {
    return fmt::format("this member averages {} tensors but the leader averages {}", mine.size(),
                       leaders.size());
  }
  for (size_t i = 0; i < mine.size(); ++i) {
    if (mine[i] != leaders[i]) {
      return fmt::format("tensor {} has {} {} elements here but {} {} at the leader", i,
                         mine[i].elements, quant::dtype_name(mine[i].dtype), leaders[i].elements,
                         quant::dtype_name(leaders[i].dtype));
    }
  }
  return "";
}

std::vector<uint8_t> encode_member_info(const MemberInfo& member) {
  std::vector<uint8_t> bytes;
  ByteWriter out(bytes);
  write_header(out, MessageType::kMember);
  write_member(out, member);
  return bytes;
}

Result<MemberInfo> decode_member_info(std::span<const uint8_t> bytes,
                                      const GroupWireLimits& limits) {
  Decoder in(bytes, MessageType::kMember, limits);
  HIVEMIND_RETURN_IF_ERROR(in.header());
  MemberInfo member;
  HIVEMIND_RETURN_IF_ERROR(in.member(member));
  HIVEMIND_RETURN_IF_ERROR(in.end());
  return member;
}

std::vector<uint8_t> encode_join_request(const JoinRequest& request) {
  std::vector<uint8_t> bytes;
  ByteWriter out(bytes);
  write_header(out, MessageType::kJoin);
  write_bytes(out, request.key);
  write_member(out, request.member);
  out.varint(request.tensors.size());
  for (const auto& tensor : request.tensors) {
    out.u8(static_cast<uint8_t>(tensor.dtype));
    out.varint(tensor.elements);
  }
  out.u64(request.last_round);
  out.varint(static_cast<uint64_t>(std::max<int64_t>(0, request.wait.count())));
  return bytes;
}

Result<JoinRequest> decode_join_request(std::span<const uint8_t> bytes,
                                        const GroupWireLimits& limits) {
  Decoder in(bytes, MessageType::kJoin, limits);
  HIVEMIND_RETURN_IF_ERROR(in.header());
  JoinRequest request;
  HIVEMIND_RETURN_IF_ERROR(in.string("key", limits.max_key_bytes, request.key));
  if (request.key.empty()) return in.error("empty key");
  HIVEMIND_RETURN_IF_ERROR(in.member(request.member));
  size_t tensors = 0;
  HIVEMIND_RETURN_IF_ERROR(in.count("tensors", limits.max_tensors, 2, tensors));
  request.tensors.resize(tensors);
  for (size_t i = 0; i < tensors; ++i) {
    uint8_t dtype = 0;
    HIVEMIND_RETURN_IF_ERROR(in.u8("tensor dtype", dtype));
    if (dtype > quant::kMaxDTypeValue || !quant::is_floating(static_cast<quant::DType>(dtype)))
      return in.error(fmt::format("tensor {} has dtype {}, not a floating type", i, dtype));
    request.tensors[i].dtype = static_cast<quant::DType>(dtype);
    HIVEMIND_RETURN_IF_ERROR(in.varint("tensor elements", request.tensors[i].elements));
    if (request.tensors[i].elements == 0) return in.error(fmt::format("tensor {} is empty", i));
  }
  HIVEMIND_RETURN_IF_ERROR(in.u64("last round", request.last_round));
  uint64_t wait_ms = 0;
  HIVEMIND_RETURN_IF_ERROR(in.varint("wait", wait_ms));
  // A day is far beyond any round; more is a broken peer, and would overflow steady time.
  if (wait_ms > 86'400'000) return in.error(fmt::format("wait of {} ms", wait_ms));
  request.wait = Milliseconds(static_cast<int64_t>(wait_ms));
  HIVEMIND_RETURN_IF_ERROR(in.end());
  return request;
}

std::vector<uint8_t> encode_group(const Group& group) {
  std::vector<uint8_t> bytes;
  ByteWriter out(bytes);
  write_header(out, MessageType::kGroup);
  write_bytes(out, group.key);
  out.u64(group.round);
  out.varint(group.members.size());
  for (const auto& member : group.members)
    write_member(out, member);
  out.varint(group.self);
  write_bytes(out, group.backend);
  out.varint(group.backend_setup.size());
  out.raw(group.backend_setup);
  return bytes;
}

namespace {

// The body of a GROUP message, after its header.
Result<Group> decode_group_body(Decoder& in, const GroupWireLimits& limits) {
  Group group;
  HIVEMIND_RETURN_IF_ERROR(in.string("key", limits.max_key_bytes, group.key));
  if (group.key.empty()) return in.error("empty key");
  HIVEMIND_RETURN_IF_ERROR(in.u64("round", group.round));
  size_t members = 0;
  // A member is at least an endpoint byte plus three length bytes.
  HIVEMIND_RETURN_IF_ERROR(in.count("members", limits.max_members, 4, members));
  if (members == 0) return in.error("no members");
  group.members.resize(members);
  std::set<std::string_view> endpoints;
  for (auto& member : group.members) {
    HIVEMIND_RETURN_IF_ERROR(in.member(member));
    if (!endpoints.insert(member.endpoint).second)
      return in.error(fmt::format("member {} listed twice", member.endpoint));
  }
  uint64_t self = 0;
  HIVEMIND_RETURN_IF_ERROR(in.varint("self", self));
  if (self >= members)
    return in.error(fmt::format("self index {} outside the {} members", self, members));
  group.self = static_cast<size_t>(self);
  HIVEMIND_RETURN_IF_ERROR(in.string("backend", limits.max_backend_name_bytes, group.backend));
  for (const auto& member : group.members) {
    if (std::find(member.backends.begin(), member.backends.end(), group.backend) ==
        member.backends.end()) {
      return in.error(
          fmt::format("backend '{}' is not one member {} can run", group.backend, member.endpoint));
    }
  }
  std::string setup;
  HIVEMIND_RETURN_IF_ERROR(in.string("backend setup", limits.max_setup_bytes, setup));
  group.backend_setup.assign(setup.begin(), setup.end());
  HIVEMIND_RETURN_IF_ERROR(in.end());
  return group;
}

Result<JoinRefusal> decode_refusal_body(Decoder& in, const GroupWireLimits& limits) {
  JoinRefusal refusal;
  uint8_t reason = 0;
  HIVEMIND_RETURN_IF_ERROR(in.u8("reason", reason));
  if (reason < static_cast<uint8_t>(JoinRefusal::Reason::kLate) ||
      reason > static_cast<uint8_t>(JoinRefusal::Reason::kSuperseded)) {
    return in.error(fmt::format("unknown refusal reason {}", reason));
  }
  refusal.reason = static_cast<JoinRefusal::Reason>(reason);
  HIVEMIND_RETURN_IF_ERROR(in.string("message", limits.max_message_bytes, refusal.message));
  HIVEMIND_RETURN_IF_ERROR(in.end());
  return refusal;
}

}  // namespace

Result<Group> decode_group(std::span<const uint8_t> bytes, const GroupWireLimits& limits) {
  Decoder in(bytes, MessageType::kGroup, limits);
  HIVEMIND_RETURN_IF_ERROR(in.header());
  return decode_group_body(in, limits);
}

std::vector<uint8_t> encode_join_refusal(const JoinRefusal& refusal) {
  std::vector<uint8_t> bytes;
  ByteWriter out(bytes);
  write_header(out, MessageType::kRefusal);
  out.u8(static_cast<uint8_t>(refusal.reason));
  write_bytes(out, refusal.message);
  return bytes;
}

Result<std::variant<Group, JoinRefusal>> decode_join_reply(std::span<const uint8_t> bytes,
                                                           const GroupWireLimits& limits) {
  Decoder in(bytes, MessageType::kGroup, limits);
  HIVEMIND_RETURN_IF_ERROR(in.header(MessageType::kRefusal));
  if (in.type() == MessageType::kRefusal) {
    HIVEMIND_ASSIGN_OR_RETURN(JoinRefusal refusal, decode_refusal_body(in, limits));
    return std::variant<Group, JoinRefusal>(std::move(refusal));
  }
  HIVEMIND_ASSIGN_OR_RETURN(Group group, decode_group_body(in, limits));
  return std::variant<Group, JoinRefusal>(std::move(group));
}

}  // namespace hivemind::averaging
