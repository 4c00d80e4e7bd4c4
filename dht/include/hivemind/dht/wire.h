// The DHT wire format: PING, FIND, STORE, their replies, and ERROR (docs/wire-formats.md, "DHT
// messages"). One message per transport message ("dht" method); all integers little-endian, lengths
// and counts as canonical LEB128 varints.
//
// decode() validates every length and count against WireLimits before it allocates and refuses
// trailing bytes, unknown types, unknown flag bits and malformed addresses.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <hivemind/common/result.h>
#include <hivemind/dht/contact.h>
#include <hivemind/dht/node_id.h>
#include <hivemind/dht/options.h>
#include <hivemind/dht/record.h>

namespace hivemind::dht::wire {

inline constexpr uint8_t kMagic0 = 'H';
inline constexpr uint8_t kMagic1 = 'D';
inline constexpr uint8_t kVersion = 1;

enum class MessageType : uint8_t {
  kPing = 1,
  kPong = 2,
  kFind = 3,
  kFound = 4,
  kStore = 5,
  kStored = 6,
  kError = 7,
};
std::string_view message_type_name(MessageType type);
bool is_request(MessageType type);
// The reply type a request expects (kError is always acceptable too).
MessageType reply_type_for(MessageType request);

// Header flag bits.
inline constexpr uint8_t kFlagClient = 0x01;  // the sender takes no part in routing or storage

// Per-item outcome of a STORE.
enum class StoreStatus : uint8_t {
  kStored = 0,
  kOutdated = 1,        // the node holds a value at least as new
  kExpired = 2,         // expiration <= now
  kTooFarInFuture = 3,  // expiration > now + max_ttl (+ slack)
  kTooLarge = 4,        // value or subkey over its limit
  kQuotaExceeded = 5,   // the sender's per-source quota is used up
  kTooManySubkeys = 6,  // the dictionary is full
  kRefused = 7,         // the node does not store for others (client mode) or storage is full
};
inline constexpr uint8_t kMaxStoreStatus = 7;
std::string_view store_status_name(StoreStatus status);

enum class ErrorCode : uint8_t {
  kMalformed = 1,
  kUnsupportedVersion = 2,
  kRateLimited = 3,
  kClockSkew = 4,
  kRefused = 5,
  kInternal = 6,
};
inline constexpr uint8_t kMaxErrorCode = 6;
std::string_view error_code_name(ErrorCode code);

struct Header {
  uint8_t version = kVersion;
  MessageType type = MessageType::kPing;
  uint8_t flags = 0;
  uint64_t request_id = 0;
  NodeId sender;
  DhtTime sender_time = 0;     // the sender's DHT clock when it sent this (clock-skew check)
  std::string sender_address;  // where the sender listens; empty only with kFlagClient
};

struct FindRequest {
  bool nodes_only = false;  // contacts only, no values (node lookups, bucket refresh)
  std::vector<NodeId> keys;
};

struct FoundEntry {
  std::vector<Contact> contacts;
  Record record;           // empty when the node holds nothing for the key
  bool truncated = false;  // the dictionary was cut to fit the frame (newest subkeys kept)
};

struct FindReply {
  std::vector<FoundEntry> entries;  // one per requested key, same order
};

struct StoreItem {
  NodeId key;
  std::optional<std::string> subkey;
  std::string value;
  DhtTime expiration = 0;
  bool in_cache = false;  // a cached copy, not a replica
};

struct StoreRequest {
  std::vector<StoreItem> items;
};

struct StoreReply {
  std::vector<StoreStatus> statuses;  // one per item, same order
};

struct ErrorReply {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

// PING and PONG have no body.
using Body =
    std::variant<std::monostate, FindRequest, FindReply, StoreRequest, StoreReply, ErrorReply>;

struct Message {
  Header header;
  Body body;
};

// Serializes `message`. The caller keeps within the limits (replies are fitted with fit_record).
std::vector<uint8_t> encode(const Message& message);

// Parses and validates one frame. Errors: kProtocol (malformed), kTooLarge (a limit), kUnsupported
// (another protocol version).
Result<Message> decode(std::span<const uint8_t> frame, const WireLimits& limits);
// Just the header, for rate limiting and error replies before the body is parsed.
Result<Header> decode_header(std::span<const uint8_t> frame, const WireLimits& limits);

// Accepts "<scheme>://<host>:<port>" with a lowercase scheme, a port in 1..65535, and a host that
// is not a wildcard ("0.0.0.0", "::"), broadcast or IPv4 multicast.
bool is_valid_address(std::string_view address, size_t max_bytes);

// Bytes the record takes in a FOUND entry.
size_t encoded_record_size(const Record& record);
size_t encoded_contact_size(const Contact& contact);

// The record as a FOUND entry can carry it in `budget` bytes and `max_subkeys` entries: a
// dictionary keeps its newest subkeys. Sets `truncated` when something was left out; a regular
// value that does not fit becomes empty.
Record fit_record(const Record& record, size_t budget, size_t max_subkeys, bool& truncated);

}  // namespace hivemind::dht::wire
