#include <algorithm>
#include <charconv>

#include <hivemind/common/byte_order.h>
#include <hivemind/dht/wire.h>

namespace hivemind::dht::wire {

std::string_view message_type_name(MessageType type) {
  switch (type) {
    case MessageType::kPing:
      return "PING";
    case MessageType::kPong:
      return "PONG";
    case MessageType::kFind:
      return "FIND";
    case MessageType::kFound:
      return "FOUND";
    case MessageType::kStore:
      return "STORE";
    case MessageType::kStored:
      return "STORED";
    case MessageType::kError:
      return "ERROR";
  }
  return "?";
}

bool is_request(MessageType type) {
  return type == MessageType::kPing || type == MessageType::kFind || type == MessageType::kStore;
}

MessageType reply_type_for(MessageType request) {
  switch (request) {
    case MessageType::kPing:
      return MessageType::kPong;
    case MessageType::kFind:
      return MessageType::kFound;
    case MessageType::kStore:
      return MessageType::kStored;
    default:
      return MessageType::kError;
  }
}

std::string_view store_status_name(StoreStatus status) {
  switch (status) {
    case StoreStatus::kStored:
      return "stored";
    case StoreStatus::kOutdated:
      return "outdated";
    case StoreStatus::kExpired:
      return "expired";
    case StoreStatus::kTooFarInFuture:
      return "too far in the future";
    case StoreStatus::kTooLarge:
      return "too large";
    case StoreStatus::kQuotaExceeded:
      return "quota exceeded";
    case StoreStatus::kTooManySubkeys:
      return "too many subkeys";
    case StoreStatus::kRefused:
      return "refused";
  }
  return "?";
}

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kMalformed:
      return "malformed";
    case ErrorCode::kUnsupportedVersion:
      return "unsupported version";
    case ErrorCode::kRateLimited:
      return "rate limited";
    case ErrorCode::kClockSkew:
      return "clock skew";
    case ErrorCode::kRefused:
      return "refused";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "?";
}

// ---- addresses ----------------------------------------------------------------------------------

namespace {

std::optional<std::array<int, 4>> parse_ipv4(std::string_view host) {
  std::array<int, 4> parts{};
  size_t pos = 0;
  for (int i = 0; i < 4; ++i) {
    size_t end = i < 3 ? host.find('.', pos) : host.size();
    if (end == std::string_view::npos || end == pos || end - pos > 3) return std::nullopt;
    int value = 0;
    auto [ptr, ec] = std::from_chars(host.data() + pos, host.data() + end, value);
    if (ec != std::errc() || ptr != host.data() + end || value > 255) return std::nullopt;
    parts[static_cast<size_t>(i)] = value;
    pos = end + 1;
  }
  return parts;
}

bool valid_hostname(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return host.front() != '.' && host.front() != '-';
}

}  // namespace

bool is_valid_address(std::string_view address, size_t max_bytes) {
  if (address.empty() || address.size() > max_bytes) return false;
  size_t sep = address.find("://");
  if (sep == std::string_view::npos || sep == 0 || sep > 16) return false;
  for (char c : address.substr(0, sep)) {
    if (c < 'a' || c > 'z') return false;
  }
  std::string_view rest = address.substr(sep + 3);
  size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view host = rest.substr(0, colon), port_text = rest.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 || port_text.front() == '0') return false;
  int port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port < 1 || port > 65535) {
    return false;
  }
  if (host.front() == '[') {
    if (host.back() != ']' || host.size() < 4) return false;
    std::string_view inner = host.substr(1, host.size() - 2);
    for (char c : inner) {
      bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                c == ':' || c == '.';
      if (!ok) return false;
    }
    if (inner.find_first_not_of(":0") == std::string_view::npos) return false;  // "::" wildcard
    std::string_view lower = inner.substr(0, 2);
    if (lower == "ff" || lower == "FF") return false;  // IPv6 multicast
    return true;
  }
  if (auto v4 = parse_ipv4(host)) {
    const auto& p = *v4;
    if (p[0] == 0) return false;                   // 0.0.0.0/8, the wildcard
    if (p[0] >= 224 && p[0] <= 239) return false;  // multicast
    if (p[0] == 255 && p[1] == 255 && p[2] == 255 && p[3] == 255) return false;  // broadcast
    return true;
  }
  // A name that is all digits and dots but not a valid IPv4 literal is malformed, not a host name.
  if (host.find_first_not_of("0123456789.") == std::string_view::npos) return false;
  return valid_hostname(host);
}

// ---- sizes --------------------------------------------------------------------------------------

namespace {

size_t bytes_size(size_t n) {
  return varint_size(n) + n;
}

}  // namespace

size_t encoded_contact_size(const Contact& contact) {
  return NodeId::kBytes + bytes_size(contact.address.size());
}

size_t encoded_record_size(const Record& record) {
  if (record.regular) return 1 + 8 + bytes_size(record.regular->value.size());
  if (record.dictionary.empty()) return 1;
  size_t size = 1 + 1 + varint_size(record.dictionary.size());
  for (const auto& [subkey, entry] : record.dictionary) {
    size += bytes_size(subkey.size()) + 8 + bytes_size(entry.value.size());
  }
  return size;
}

Record fit_record(const Record& record, size_t budget, size_t max_subkeys, bool& truncated) {
  truncated = false;
  if (record.regular || record.dictionary.empty()) {
    if (encoded_record_size(record) <= budget) return record;
    truncated = true;
    return {};
  }
  if (record.dictionary.size() <= max_subkeys && encoded_record_size(record) <= budget)
    return record;
  // Newest first: the entries most likely to still be live when the asker uses them.
  std::vector<const std::pair<const std::string, ValueEntry>*> order;
  order.reserve(record.dictionary.size());
  for (const auto& item : record.dictionary)
    order.push_back(&item);
  std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    if (a->second.expiration != b->second.expiration)
      return a->second.expiration > b->second.expiration;
    return a->first < b->first;
  });
  Record out;
  size_t size = 1 + 1 + varint_size(std::min(order.size(), max_subkeys));
  for (const auto* item : order) {
    if (out.dictionary.size() >= max_subkeys) break;
    size_t entry = bytes_size(item->first.size()) + 8 + bytes_size(item->second.value.size());
    if (size + entry > budget) break;
    size += entry;
    out.dictionary.emplace(item->first, item->second);
  }
  truncated = out.dictionary.size() < record.dictionary.size();
  return out;
}

// ---- encode -------------------------------------------------------------------------------------

namespace {

constexpr uint8_t kRecordNone = 0;
constexpr uint8_t kRecordRegular = 1;
constexpr uint8_t kRecordDictionary = 2;

constexpr uint8_t kFindNodesOnly = 0x01;
constexpr uint8_t kStoreInCache = 0x01;
constexpr uint8_t kStoreHasSubkey = 0x02;
constexpr uint8_t kDictionaryTruncated = 0x01;

// A byte string: its length as a varint, then the bytes.
void write_bytes(ByteWriter& w, std::string_view bytes) {
  w.varint(bytes.size());
  w.raw(bytes);
}

void encode_record(ByteWriter& w, const Record& record, bool truncated) {
  if (record.regular) {
    w.u8(kRecordRegular);
    w.i64(record.regular->expiration);
    write_bytes(w, record.regular->value);
  } else if (!record.dictionary.empty()) {
    w.u8(kRecordDictionary);
    w.u8(truncated ? kDictionaryTruncated : 0);
    w.varint(record.dictionary.size());
    for (const auto& [subkey, entry] : record.dictionary) {
      write_bytes(w, subkey);
      w.i64(entry.expiration);
      write_bytes(w, entry.value);
    }
  } else {
    w.u8(kRecordNone);
  }
}

struct BodyEncoder {
  ByteWriter& w;
  void operator()(const std::monostate&) {}
  void operator()(const FindRequest& find) {
    w.u8(find.nodes_only ? kFindNodesOnly : 0);
    w.varint(find.keys.size());
    for (const auto& key : find.keys)
      w.raw(key.span());
  }
  void operator()(const FindReply& found) {
    w.varint(found.entries.size());
    for (const auto& entry : found.entries) {
      w.varint(entry.contacts.size());
      for (const auto& contact : entry.contacts) {
        w.raw(contact.id.span());
        write_bytes(w, contact.address);
      }
      encode_record(w, entry.record, entry.truncated);
    }
  }
  void operator()(const StoreRequest& store) {
    w.varint(store.items.size());
    for (const auto& item : store.items) {
      w.raw(item.key.span());
      w.u8(static_cast<uint8_t>((item.in_cache ? kStoreInCache : 0) |
                                (item.subkey ? kStoreHasSubkey : 0)));
      if (item.subkey) write_bytes(w, *item.subkey);
      w.i64(item.expiration);
      write_bytes(w, item.value);
    }
  }
  void operator()(const StoreReply& stored) {
    w.varint(stored.statuses.size());
    for (auto status : stored.statuses)
      w.u8(static_cast<uint8_t>(status));
  }
  void operator()(const ErrorReply& error) {
    w.u8(static_cast<uint8_t>(error.code));
    write_bytes(w, error.message);
  }
};

}  // namespace

std::vector<uint8_t> encode(const Message& message) {
  std::vector<uint8_t> out;
  out.reserve(64 + message.header.sender_address.size());
  ByteWriter w(out);
  const Header& h = message.header;
  w.u8(kMagic0);
  w.u8(kMagic1);
  w.u8(h.version);
  w.u8(static_cast<uint8_t>(h.type));
  w.u8(h.flags);
  w.u64(h.request_id);
  w.raw(h.sender.span());
  w.i64(h.sender_time);
  write_bytes(w, h.sender_address);
  std::visit(BodyEncoder{w}, message.body);
  return out;
}

// ---- decode -------------------------------------------------------------------------------------

namespace {

Status malformed(std::string_view what) {
  return protocol_error("dht message: " + std::string(what));
}

Status over_limit(std::string_view what, uint64_t got, size_t limit) {
  return too_large_error("dht message: " + std::string(what) + " " + std::to_string(got) +
                         " exceeds the limit of " + std::to_string(limit));
}

bool read_id(ByteReader& r, NodeId& id) {
  std::span<const uint8_t> bytes;
  if (!r.view(NodeId::kBytes, bytes)) return false;
  id = *NodeId::from_bytes(bytes);
  return true;
}

// Reads a count and checks it against `limit` and against the bytes left (each element takes at
// least `min_element_bytes`), so that no allocation is sized from an unchecked number.
Status read_count(ByteReader& r, std::string_view what, size_t limit, size_t min_element_bytes,
                  size_t& count) {
  uint64_t n;
  if (!r.varint(n)) return malformed(std::string(what) + " count");
  if (n > limit) return over_limit(what, n, limit);
  if (n * min_element_bytes > r.remaining())
    return malformed(std::string(what) + " count past the end");
  count = static_cast<size_t>(n);
  return Status::ok();
}

Status read_bytes(ByteReader& r, std::string_view what, size_t limit, std::string& out) {
  uint64_t n;
  if (!r.varint(n)) return malformed(what);
  if (n > limit) return over_limit(what, n, limit);
  if (!r.string(static_cast<size_t>(n), out)) return malformed(std::string(what) + " past the end");
  return Status::ok();
}

Status decode_header_from(ByteReader& r, const WireLimits& limits, Header& h) {
  uint8_t m0, m1, type, version;
  if (!r.u8(m0) || !r.u8(m1) || m0 != kMagic0 || m1 != kMagic1) return malformed("bad magic");
  if (!r.u8(version)) return malformed("truncated header");
  if (version != kVersion) {
    return unsupported_error("dht message: protocol version " + std::to_string(version) +
                             " (this node speaks " + std::to_string(kVersion) + ")");
  }
  h.version = version;
  if (!r.u8(type) || !r.u8(h.flags) || !r.u64(h.request_id) || !read_id(r, h.sender) ||
      !r.i64(h.sender_time)) {
    return malformed("truncated header");
  }
  if (type < static_cast<uint8_t>(MessageType::kPing) ||
      type > static_cast<uint8_t>(MessageType::kError)) {
    return malformed("unknown message type " + std::to_string(type));
  }
  h.type = static_cast<MessageType>(type);
  if (h.flags & ~kFlagClient) return malformed("unknown header flags");
  HIVEMIND_RETURN_IF_ERROR(
      read_bytes(r, "sender address", limits.max_address_bytes, h.sender_address));
  if (h.sender_address.empty()) {
    if (!(h.flags & kFlagClient)) return malformed("empty sender address without the client flag");
  } else if (!is_valid_address(h.sender_address, limits.max_address_bytes)) {
    return malformed("invalid sender address");
  }
  return Status::ok();
}

Status decode_record(ByteReader& r, const WireLimits& limits, Record& record, bool& truncated) {
  uint8_t tag;
  if (!r.u8(tag)) return malformed("truncated record");
  truncated = false;
  if (tag == kRecordNone) return Status::ok();
  if (tag == kRecordRegular) {
    ValueEntry entry;
    if (!r.i64(entry.expiration)) return malformed("truncated record");
    HIVEMIND_RETURN_IF_ERROR(read_bytes(r, "value size", limits.max_value_bytes, entry.value));
    record.regular = std::move(entry);
    return Status::ok();
  }
  if (tag != kRecordDictionary) return malformed("unknown record tag");
  uint8_t flags;
  if (!r.u8(flags) || (flags & ~kDictionaryTruncated)) return malformed("bad dictionary flags");
  truncated = flags & kDictionaryTruncated;
  size_t count;
  HIVEMIND_RETURN_IF_ERROR(read_count(r, "subkeys", limits.max_subkeys_per_key, 10, count));
  if (count == 0) return malformed("empty dictionary");
  for (size_t i = 0; i < count; ++i) {
    std::string subkey;
    ValueEntry entry;
    HIVEMIND_RETURN_IF_ERROR(read_bytes(r, "subkey size", limits.max_subkey_bytes, subkey));
    if (!r.i64(entry.expiration)) return malformed("truncated dictionary entry");
    HIVEMIND_RETURN_IF_ERROR(read_bytes(r, "value size", limits.max_value_bytes, entry.value));
    // Strictly ascending, as encoded: one encoding per dictionary, and no duplicates.
    if (!record.dictionary.empty() && !(record.dictionary.rbegin()->first < subkey)) {
      return malformed("subkeys repeated or out of order");
    }
    record.dictionary.emplace_hint(record.dictionary.end(), std::move(subkey), std::move(entry));
  }
  return Status::ok();
}

Status decode_body(ByteReader& r, const WireLimits& limits, MessageType type, Body& body) {
  switch (type) {
    case MessageType::kPing:
    case MessageType::kPong:
      body = std::monostate{};
      return Status::ok();
    case MessageType::kFind: {
      FindRequest find;
      uint8_t flags;
      if (!r.u8(flags) || (flags & ~kFindNodesOnly)) return malformed("bad FIND flags");
      find.nodes_only = flags & kFindNodesOnly;
      size_t count;
      HIVEMIND_RETURN_IF_ERROR(
          read_count(r, "keys", limits.max_keys_per_request, NodeId::kBytes, count));
      if (count == 0) return malformed("FIND without keys");
      find.keys.resize(count);
      for (auto& key : find.keys)
        read_id(r, key);
      body = std::move(find);
      return Status::ok();
    }
    case MessageType::kFound: {
      FindReply found;
      size_t count;
      HIVEMIND_RETURN_IF_ERROR(read_count(r, "keys", limits.max_keys_per_request, 2, count));
      found.entries.resize(count);
      for (auto& entry : found.entries) {
        size_t contacts;
        HIVEMIND_RETURN_IF_ERROR(
            read_count(r, "contacts", limits.max_contacts_per_reply, NodeId::kBytes + 1, contacts));
        entry.contacts.resize(contacts);
        for (auto& contact : entry.contacts) {
          if (!read_id(r, contact.id)) return malformed("truncated contact");
          HIVEMIND_RETURN_IF_ERROR(
              read_bytes(r, "contact address", limits.max_address_bytes, contact.address));
          if (!is_valid_address(contact.address, limits.max_address_bytes)) {
            return malformed("invalid contact address");
          }
        }
        HIVEMIND_RETURN_IF_ERROR(decode_record(r, limits, entry.record, entry.truncated));
      }
      body = std::move(found);
      return Status::ok();
    }
    case MessageType::kStore: {
      StoreRequest store;
      size_t count;
      HIVEMIND_RETURN_IF_ERROR(
          read_count(r, "items", limits.max_keys_per_request, NodeId::kBytes + 10, count));
      if (count == 0) return malformed("STORE without items");
      store.items.resize(count);
      for (auto& item : store.items) {
        uint8_t flags;
        if (!read_id(r, item.key) || !r.u8(flags)) return malformed("truncated store item");
        if (flags & ~(kStoreInCache | kStoreHasSubkey)) return malformed("bad store item flags");
        item.in_cache = flags & kStoreInCache;
        if (flags & kStoreHasSubkey) {
          item.subkey.emplace();
          HIVEMIND_RETURN_IF_ERROR(
              read_bytes(r, "subkey size", limits.max_subkey_bytes, *item.subkey));
        }
        if (!r.i64(item.expiration)) return malformed("truncated store item");
        HIVEMIND_RETURN_IF_ERROR(read_bytes(r, "value size", limits.max_value_bytes, item.value));
      }
      body = std::move(store);
      return Status::ok();
    }
    case MessageType::kStored: {
      StoreReply stored;
      size_t count;
      HIVEMIND_RETURN_IF_ERROR(read_count(r, "statuses", limits.max_keys_per_request, 1, count));
      stored.statuses.resize(count);
      for (auto& status : stored.statuses) {
        uint8_t value = 0;
        if (!r.u8(value) || value > kMaxStoreStatus) return malformed("unknown store status");
        status = static_cast<StoreStatus>(value);
      }
      body = std::move(stored);
      return Status::ok();
    }
    case MessageType::kError: {
      ErrorReply error;
      uint8_t code;
      if (!r.u8(code)) return malformed("truncated ERROR");
      if (code < 1 || code > kMaxErrorCode) return malformed("unknown error code");
      error.code = static_cast<ErrorCode>(code);
      HIVEMIND_RETURN_IF_ERROR(
          read_bytes(r, "error message", limits.max_error_bytes, error.message));
      body = std::move(error);
      return Status::ok();
    }
  }
  return malformed("unknown message type");
}

}  // namespace

Result<Header> decode_header(std::span<const uint8_t> frame, const WireLimits& limits) {
  if (frame.size() > limits.max_frame_bytes)
    return over_limit("frame size", frame.size(), limits.max_frame_bytes);
  ByteReader r(frame);
  Header h;
  HIVEMIND_RETURN_IF_ERROR(decode_header_from(r, limits, h));
  return h;
}

Result<Message> decode(std::span<const uint8_t> frame, const WireLimits& limits) {
  if (frame.size() > limits.max_frame_bytes)
    return over_limit("frame size", frame.size(), limits.max_frame_bytes);
  ByteReader r(frame);
  Message message;
  HIVEMIND_RETURN_IF_ERROR(decode_header_from(r, limits, message.header));
  HIVEMIND_RETURN_IF_ERROR(decode_body(r, limits, message.header.type, message.body));
  if (!r.done()) return malformed("trailing bytes");
  return message;
}

}  // namespace hivemind::dht::wire
