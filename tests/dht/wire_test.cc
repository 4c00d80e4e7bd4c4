#include <gtest/gtest.h>

#include <hivemind/dht/wire.h>

namespace hivemind::dht::wire {
namespace {

Header header(MessageType type) {
  Header h;
  h.type = type;
  h.request_id = 0x1122334455667788ULL;
  h.sender = NodeId::from_key("sender");
  h.sender_time = 1'700'000'000'123;
  h.sender_address = "tcp://127.0.0.1:21000";
  return h;
}

Contact contact(int i) {
  return Contact{NodeId::from_key("c" + std::to_string(i)),
                 "tcp://10.0.0." + std::to_string(i + 1) + ":21000"};
}

std::vector<uint8_t> find_frame(size_t keys) {
  FindRequest find;
  for (size_t i = 0; i < keys; ++i)
    find.keys.push_back(NodeId::from_key("k" + std::to_string(i)));
  return encode(Message{header(MessageType::kFind), find});
}

std::vector<uint8_t> store_frame(size_t items, size_t value_bytes, size_t subkey_bytes) {
  StoreRequest store;
  for (size_t i = 0; i < items; ++i) {
    store.items.push_back({NodeId::from_key("k" + std::to_string(i)),
                           std::string(subkey_bytes, 's'), std::string(value_bytes, 'v'),
                           1'700'000'060'000, i % 2 == 1});
  }
  return encode(Message{header(MessageType::kStore), store});
}

TEST(Wire, RoundTripsEveryMessage) {
  WireLimits limits;
  std::vector<Message> messages;
  messages.push_back({header(MessageType::kPing), std::monostate{}});
  messages.push_back({header(MessageType::kPong), std::monostate{}});
  messages.push_back({header(MessageType::kFind),
                      FindRequest{true, {NodeId::from_key("a"), NodeId::from_key("b")}}});
  FindReply found;
  found.entries.resize(3);
  found.entries[0].contacts = {contact(1), contact(2)};
  found.entries[1].record.regular = ValueEntry{"value", 123};
  found.entries[2].record.dictionary = {{"1", {"x", 5}}, {"-1", {"", 6}}};
  found.entries[2].truncated = true;
  messages.push_back({header(MessageType::kFound), found});
  StoreRequest store;
  store.items.push_back({NodeId::from_key("k"), std::nullopt, "v", 99, false});
  store.items.push_back({NodeId::from_key("k"), std::string("sub"), "", 100, true});
  messages.push_back({header(MessageType::kStore), store});
  messages.push_back(
      {header(MessageType::kStored), StoreReply{{StoreStatus::kStored, StoreStatus::kRefused}}});
  messages.push_back(
      {header(MessageType::kError), ErrorReply{ErrorCode::kRateLimited, "slow down"}});
  Header client = header(MessageType::kPing);
  client.flags = kFlagClient;
  client.sender_address.clear();
  messages.push_back({client, std::monostate{}});

  for (const auto& message : messages) {
    auto frame = encode(message);
    auto decoded = decode(frame, limits);
    ASSERT_TRUE(decoded.is_ok()) << message_type_name(message.header.type) << ": "
                                 << decoded.status().to_string();
    EXPECT_EQ(encode(*decoded), frame) << message_type_name(message.header.type);
    EXPECT_EQ(decoded->header.request_id, message.header.request_id);
    EXPECT_EQ(decoded->header.sender, message.header.sender);
    EXPECT_EQ(decoded->header.sender_time, message.header.sender_time);
    EXPECT_EQ(decoded->header.sender_address, message.header.sender_address);
  }
  auto decoded = decode(encode(messages[3]), limits);
  const auto& f = std::get<FindReply>(decoded->body);
  EXPECT_EQ(f.entries[0].contacts[1], contact(2));
  EXPECT_EQ(f.entries[1].record.regular->value, "value");
  EXPECT_TRUE(f.entries[2].truncated);
  EXPECT_EQ(f.entries[2].record.dictionary.at("-1").expiration, 6);
  auto store_decoded = decode(encode(messages[4]), limits);
  const auto& s = std::get<StoreRequest>(store_decoded->body);
  EXPECT_FALSE(s.items[0].subkey.has_value());
  EXPECT_EQ(*s.items[1].subkey, "sub");
  EXPECT_TRUE(s.items[1].in_cache);
}

// ---- every limit at the limit and at limit + 1 ----

TEST(WireLimits, FrameSize) {
  WireLimits limits;
  auto frame = store_frame(4, 100, 4);
  limits.max_frame_bytes = frame.size();
  EXPECT_TRUE(decode(frame, limits).is_ok());
  limits.max_frame_bytes = frame.size() - 1;
  auto result = decode(frame, limits);
  EXPECT_EQ(result.status().code(), StatusCode::kTooLarge);
  EXPECT_EQ(decode_header(frame, limits).status().code(), StatusCode::kTooLarge);
}

TEST(WireLimits, KeysPerFind) {
  WireLimits limits;
  limits.max_keys_per_request = 8;
  EXPECT_TRUE(decode(find_frame(8), limits).is_ok());
  EXPECT_EQ(decode(find_frame(9), limits).status().code(), StatusCode::kTooLarge);
}

TEST(WireLimits, ItemsPerStore) {
  WireLimits limits;
  limits.max_keys_per_request = 8;
  EXPECT_TRUE(decode(store_frame(8, 1, 1), limits).is_ok());
  EXPECT_EQ(decode(store_frame(9, 1, 1), limits).status().code(), StatusCode::kTooLarge);
}

TEST(WireLimits, ValueSize) {
  WireLimits limits;
  limits.max_value_bytes = 64;
  EXPECT_TRUE(decode(store_frame(1, 64, 1), limits).is_ok());
  EXPECT_EQ(decode(store_frame(1, 65, 1), limits).status().code(), StatusCode::kTooLarge);
  FindReply found;
  found.entries.resize(1);
  found.entries[0].record.regular = ValueEntry{std::string(65, 'v'), 1};
  EXPECT_EQ(decode(encode({header(MessageType::kFound), found}), limits).status().code(),
            StatusCode::kTooLarge);
}

TEST(WireLimits, SubkeySize) {
  WireLimits limits;
  limits.max_subkey_bytes = 16;
  EXPECT_TRUE(decode(store_frame(1, 1, 16), limits).is_ok());
  EXPECT_EQ(decode(store_frame(1, 1, 17), limits).status().code(), StatusCode::kTooLarge);
}

TEST(WireLimits, SubkeysPerKey) {
  WireLimits limits;
  limits.max_subkeys_per_key = 10;
  auto frame = [](int subkeys) {
    FindReply found;
    found.entries.resize(1);
    for (int i = 0; i < subkeys; ++i)
      found.entries[0].record.dictionary[std::to_string(i)] = ValueEntry{"v", 1};
    return encode({header(MessageType::kFound), found});
  };
  EXPECT_TRUE(decode(frame(10), limits).is_ok());
  EXPECT_EQ(decode(frame(11), limits).status().code(), StatusCode::kTooLarge);
}

TEST(WireLimits, ContactsPerReply) {
  WireLimits limits;
  limits.max_contacts_per_reply = 5;
  auto frame = [](int contacts) {
    FindReply found;
    found.entries.resize(1);
    for (int i = 0; i < contacts; ++i)
      found.entries[0].contacts.push_back(contact(i));
    return encode({header(MessageType::kFound), found});
  };
  EXPECT_TRUE(decode(frame(5), limits).is_ok());
  EXPECT_EQ(decode(frame(6), limits).status().code(), StatusCode::kTooLarge);
}

TEST(WireLimits, AddressSize) {
  WireLimits limits;
  Header h = header(MessageType::kPing);
  h.sender_address = "tcp://" + std::string(40, 'a') + ":1";
  limits.max_address_bytes = h.sender_address.size();
  EXPECT_TRUE(decode(encode({h, std::monostate{}}), limits).is_ok());
  limits.max_address_bytes = h.sender_address.size() - 1;
  EXPECT_EQ(decode(encode({h, std::monostate{}}), limits).status().code(), StatusCode::kTooLarge);
}

TEST(WireLimits, ErrorMessageSize) {
  WireLimits limits;
  limits.max_error_bytes = 10;
  EXPECT_TRUE(decode(encode({header(MessageType::kError),
                             ErrorReply{ErrorCode::kRefused, std::string(10, 'e')}}),
                     limits)
                  .is_ok());
  EXPECT_EQ(decode(encode({header(MessageType::kError),
                           ErrorReply{ErrorCode::kRefused, std::string(11, 'e')}}),
                   limits)
                .status()
                .code(),
            StatusCode::kTooLarge);
}

// ---- malformed input ----

TEST(WireMalformed, EveryTruncationFailsCleanly) {
  WireLimits limits;
  FindReply found;
  found.entries.resize(2);
  found.entries[0].contacts = {contact(1)};
  found.entries[1].record.dictionary = {{"a", {"x", 1}}, {"b", {"y", 2}}};
  std::vector<std::vector<uint8_t>> frames = {encode({header(MessageType::kFound), found}),
                                              store_frame(3, 5, 2), find_frame(3)};
  for (const auto& frame : frames) {
    for (size_t cut = 0; cut < frame.size(); ++cut) {
      std::vector<uint8_t> prefix(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(cut));
      EXPECT_FALSE(decode(prefix, limits).is_ok()) << "cut at " << cut;
    }
  }
}

TEST(WireMalformed, HeaderChecks) {
  WireLimits limits;
  auto frame = encode({header(MessageType::kPing), std::monostate{}});
  auto bad_magic = frame;
  bad_magic[0] = 'X';
  EXPECT_EQ(decode(bad_magic, limits).status().code(), StatusCode::kProtocol);
  auto version = frame;
  version[2] = kVersion + 1;
  EXPECT_EQ(decode(version, limits).status().code(), StatusCode::kUnsupported);
  auto type = frame;
  type[3] = 99;
  EXPECT_EQ(decode(type, limits).status().code(), StatusCode::kProtocol);
  auto flags = frame;
  flags[4] = 0x80;
  EXPECT_EQ(decode(flags, limits).status().code(), StatusCode::kProtocol);
  auto trailing = frame;
  trailing.push_back(0);
  EXPECT_EQ(decode(trailing, limits).status().code(), StatusCode::kProtocol);
  Header no_address = header(MessageType::kPing);
  no_address.sender_address.clear();  // only clients may omit it
  EXPECT_EQ(decode(encode({no_address, std::monostate{}}), limits).status().code(),
            StatusCode::kProtocol);
  Header bad_address = header(MessageType::kPing);
  bad_address.sender_address = "tcp://0.0.0.0:21000";
  EXPECT_EQ(decode(encode({bad_address, std::monostate{}}), limits).status().code(),
            StatusCode::kProtocol);
}

TEST(WireMalformed, CountsBeyondTheFrameAreRefusedBeforeAllocating) {
  WireLimits limits;
  limits.max_keys_per_request = 1u << 30;  // even with a huge limit, the bytes left bound the count
  auto frame = find_frame(1);
  // Body: flags(1) count(varint) key(20). Rewrite the count to 2^28 (4-byte varint).
  size_t count_at = frame.size() - 21;
  ASSERT_EQ(frame[count_at], 1);
  std::vector<uint8_t> forged(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(count_at));
  for (uint8_t b : {0x80, 0x80, 0x80, 0x01})
    forged.push_back(b);
  forged.insert(forged.end(), frame.end() - 20, frame.end());
  EXPECT_EQ(decode(forged, limits).status().code(), StatusCode::kProtocol);
}

TEST(WireMalformed, OverlongVarintAndDuplicates) {
  WireLimits limits;
  auto frame = find_frame(1);
  size_t count_at = frame.size() - 21;
  std::vector<uint8_t> overlong(frame.begin(),
                                frame.begin() + static_cast<std::ptrdiff_t>(count_at));
  overlong.push_back(0x81);  // 1 encoded in two bytes: not canonical
  overlong.push_back(0x00);
  overlong.insert(overlong.end(), frame.end() - 20, frame.end());
  EXPECT_EQ(decode(overlong, limits).status().code(), StatusCode::kProtocol);

  FindReply found;
  found.entries.resize(1);
  found.entries[0].record.dictionary = {{"a", {"x", 1}}, {"b", {"y", 2}}};
  auto dict = encode({header(MessageType::kFound), found});
  // Rename subkey "b" to "a": the same bytes with one letter changed (a duplicate; "0" would be out
  // of order, which is refused as well).
  for (size_t i = dict.size(); i-- > 0;) {
    if (dict[i] == 'b') {
      dict[i] = 'a';
      break;
    }
  }
  EXPECT_EQ(decode(dict, limits).status().code(), StatusCode::kProtocol);
}

TEST(WireMalformed, EmptyRequestsAndBadEnums) {
  WireLimits limits;
  EXPECT_FALSE(decode(find_frame(0), limits).is_ok());
  EXPECT_FALSE(decode(store_frame(0, 1, 1), limits).is_ok());
  auto stored = encode({header(MessageType::kStored), StoreReply{{StoreStatus::kStored}}});
  stored.back() = kMaxStoreStatus + 1;
  EXPECT_FALSE(decode(stored, limits).is_ok());
  auto error = encode({header(MessageType::kError), ErrorReply{ErrorCode::kRefused, ""}});
  error[error.size() - 2] = kMaxErrorCode + 1;
  EXPECT_FALSE(decode(error, limits).is_ok());
}

TEST(WireAddress, Validation) {
  for (const char* ok : {"tcp://127.0.0.1:21000", "ucx://10.0.0.5:1", "tcp://node-7.cluster:65535",
                         "tcp://[::1]:8080", "tcp://n12:1"}) {
    EXPECT_TRUE(is_valid_address(ok, 256)) << ok;
  }
  for (const char* bad :
       {"", "127.0.0.1:21000", "tcp://127.0.0.1", "tcp://127.0.0.1:0", "tcp://127.0.0.1:65536",
        "tcp://0.0.0.0:21000", "tcp://224.0.0.1:21000", "tcp://255.255.255.255:1", "tcp://[::]:1",
        "tcp://[ff02::1]:1", "TCP://host:1", "tcp://:1", "tcp://300.1.1.1:1", "tcp://ho st:1",
        "tcp://host:01"}) {
    EXPECT_FALSE(is_valid_address(bad, 256)) << bad;
  }
  EXPECT_FALSE(is_valid_address("tcp://127.0.0.1:21000", 10));
}

TEST(WireFit, DictionaryKeepsNewestEntries) {
  Record record;
  for (int i = 0; i < 100; ++i)
    record.dictionary[std::to_string(i)] = ValueEntry{std::string(10, 'v'), 1000 + i};
  bool truncated = false;
  Record fitted = fit_record(record, 10'000, 10, truncated);
  EXPECT_TRUE(truncated);
  ASSERT_EQ(fitted.dictionary.size(), 10u);
  for (int i = 90; i < 100; ++i)
    EXPECT_EQ(fitted.dictionary.count(std::to_string(i)), 1u);
  fitted = fit_record(record, 200, 4096, truncated);
  EXPECT_TRUE(truncated);
  EXPECT_LE(encoded_record_size(fitted), 200u);
  EXPECT_GT(fitted.dictionary.size(), 0u);
  fitted = fit_record(record, 1'000'000, 4096, truncated);
  EXPECT_FALSE(truncated);
  EXPECT_EQ(fitted, record);
}

}  // namespace
}  // namespace hivemind::dht::wire
