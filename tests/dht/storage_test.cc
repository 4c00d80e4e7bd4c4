#include <gtest/gtest.h>

#include <hivemind/dht/record.h>
#include <hivemind/dht/storage.h>

namespace hivemind::dht {
namespace {

using wire::StoreStatus;

constexpr DhtTime kNow = 1'000'000;

NodeId key(int i) {
  return NodeId::from_key("key" + std::to_string(i));
}
NodeId source(int i) {
  return NodeId::from_key("source" + std::to_string(i));
}

TEST(Record, NewerExpirationWins) {
  Record r;
  EXPECT_TRUE(r.apply(std::nullopt, {"a", 100}));
  EXPECT_FALSE(r.apply(std::nullopt, {"b", 100}));  // equal is not newer
  EXPECT_FALSE(r.apply(std::nullopt, {"b", 99}));
  EXPECT_TRUE(r.apply(std::nullopt, {"c", 101}));
  EXPECT_EQ(r.regular->value, "c");
}

TEST(Record, DictionaryAndRegularReplaceEachOtherOnlyWhenNewer) {
  Record r;
  EXPECT_TRUE(r.apply("x", {"1", 100}));
  EXPECT_TRUE(r.apply("y", {"2", 200}));
  EXPECT_EQ(r.expiration(), 200);
  EXPECT_FALSE(r.apply(std::nullopt, {"v", 150}));  // older than the dictionary's newest subkey
  EXPECT_TRUE(r.apply(std::nullopt, {"v", 201}));
  EXPECT_TRUE(r.dictionary.empty());
  EXPECT_FALSE(r.apply("z", {"3", 201}));  // not newer than the regular value
  EXPECT_TRUE(r.apply("z", {"3", 202}));
  EXPECT_FALSE(r.regular.has_value());
  EXPECT_EQ(r.dictionary.size(), 1u);
}

TEST(Record, MergeTakesNewestPerSubkey) {
  Record a, b;
  a.apply("x", {"a-x", 100});
  a.apply("y", {"a-y", 300});
  b.apply("x", {"b-x", 200});
  b.apply("y", {"b-y", 250});
  b.apply("z", {"b-z", 50});
  EXPECT_TRUE(a.merge(b));
  EXPECT_EQ(a.dictionary.at("x").value, "b-x");
  EXPECT_EQ(a.dictionary.at("y").value, "a-y");
  EXPECT_EQ(a.dictionary.at("z").value, "b-z");
  a.drop_expired(100);
  EXPECT_EQ(a.dictionary.count("z"), 0u);
}

TEST(Storage, RejectedOlderStoreKeepsTheNewerExpiry) {
  // hivemind's TimedStorage bug (DHT bug 1, docs/hivemind-reference.md): store(new, 1100), then
  // store(old, 1010) is rejected, yet the key vanished at 1011. Here the rejected store cannot
  // touch the expiry index.
  Storage s(StorageLimits{});
  EXPECT_EQ(s.store(key(1), std::nullopt, {"new", kNow + 1100}, source(1), kNow),
            StoreStatus::kStored);
  EXPECT_EQ(s.store(key(1), std::nullopt, {"old", kNow + 1010}, source(1), kNow),
            StoreStatus::kOutdated);
  s.expire(kNow + 1011);
  auto r = s.get(key(1), kNow + 1011);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->regular->value, "new");
  s.expire(kNow + 1100);
  EXPECT_FALSE(s.get(key(1), kNow + 1100).has_value());
  EXPECT_EQ(s.num_keys(), 0u);
  EXPECT_EQ(s.total_bytes(), 0u);
}

TEST(Storage, ReplacedValueExpiresAtItsOwnTime) {
  Storage s(StorageLimits{});
  ASSERT_EQ(s.store(key(1), std::nullopt, {"a", kNow + 100}, source(1), kNow),
            StoreStatus::kStored);
  ASSERT_EQ(s.store(key(1), std::nullopt, {"b", kNow + 500}, source(1), kNow),
            StoreStatus::kStored);
  s.expire(kNow + 100);  // the old index entry fires; the value it was made for is gone
  ASSERT_TRUE(s.get(key(1), kNow + 100).has_value());
  EXPECT_EQ(s.get(key(1), kNow + 100)->regular->value, "b");
}

TEST(Storage, SubkeysExpireIndependently) {
  Storage s(StorageLimits{});
  ASSERT_EQ(s.store(key(1), "a", {"1", kNow + 10}, source(1), kNow), StoreStatus::kStored);
  ASSERT_EQ(s.store(key(1), "b", {"2", kNow + 20}, source(2), kNow), StoreStatus::kStored);
  EXPECT_EQ(s.store(key(1), "a", {"old", kNow + 5}, source(3), kNow), StoreStatus::kOutdated);
  s.expire(kNow + 10);
  auto r = s.get(key(1), kNow + 10);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->dictionary.size(), 1u);
  EXPECT_EQ(r->dictionary.count("b"), 1u);
  EXPECT_EQ(s.num_items(), 1u);
}

TEST(Storage, ExpirationMustBeFutureAndBounded) {
  StorageLimits limits;
  limits.max_ttl = std::chrono::seconds(60);
  limits.ttl_slack = std::chrono::seconds(3);
  Storage s(limits);
  EXPECT_EQ(s.store(key(1), std::nullopt, {"x", kNow}, source(1), kNow), StoreStatus::kExpired);
  DhtTime bound = kNow + 63'000;
  EXPECT_EQ(s.store(key(1), std::nullopt, {"x", bound}, source(1), kNow), StoreStatus::kStored);
  EXPECT_EQ(s.store(key(2), std::nullopt, {"x", bound + 1}, source(1), kNow),
            StoreStatus::kTooFarInFuture);
  // The pinning attack of DHT bug 2 (docs/hivemind-reference.md): an expiration of ~1e18 never
  // lands.
  EXPECT_EQ(s.store(key(1), std::nullopt, {"evil", DhtTime(1) << 60}, source(2), kNow),
            StoreStatus::kTooFarInFuture);
  EXPECT_EQ(s.get(key(1), kNow)->regular->value, "x");
}

TEST(Storage, ClampInsteadOfReject) {
  StorageLimits limits;
  limits.max_ttl = std::chrono::seconds(60);
  limits.clamp_expiration = true;
  Storage s(limits);
  EXPECT_EQ(s.store(key(1), std::nullopt, {"x", DhtTime(1) << 60}, source(1), kNow),
            StoreStatus::kStored);
  EXPECT_EQ(s.get(key(1), kNow)->regular->expiration, kNow + 60'000);
}

TEST(Storage, PerSourceQuotaLimitPlusOne) {
  StorageLimits limits;
  limits.max_bytes_per_source = 10 * (Storage::kItemOverhead + 10);
  Storage s(limits);
  std::string value(10, 'v');
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(s.store(key(i), std::nullopt, {value, kNow + 100}, source(1), kNow),
              StoreStatus::kStored)
        << i;
  }
  EXPECT_EQ(s.store(key(10), std::nullopt, {value, kNow + 100}, source(1), kNow),
            StoreStatus::kQuotaExceeded);
  EXPECT_EQ(s.store(key(10), std::nullopt, {value, kNow + 100}, source(2), kNow),
            StoreStatus::kStored);
  // Replacing one's own value does not count twice.
  EXPECT_EQ(s.store(key(0), std::nullopt, {value, kNow + 200}, source(1), kNow),
            StoreStatus::kStored);
  EXPECT_EQ(s.source_bytes(source(1)), limits.max_bytes_per_source);
}

TEST(Storage, FullStorageEvictsTheHeaviestSourceOldestFirst) {
  StorageLimits limits;
  size_t item = Storage::kItemOverhead + 4;
  limits.max_total_bytes = 6 * item;
  Storage s(limits);
  for (int i = 0; i < 4; ++i)
    ASSERT_EQ(s.store(key(i), std::nullopt, {"heav", kNow + 100}, source(1), kNow),
              StoreStatus::kStored);
  for (int i = 4; i < 6; ++i)
    ASSERT_EQ(s.store(key(i), std::nullopt, {"ligh", kNow + 100}, source(2), kNow),
              StoreStatus::kStored);
  EXPECT_EQ(s.store(key(6), std::nullopt, {"newc", kNow + 100}, source(3), kNow),
            StoreStatus::kStored);
  EXPECT_FALSE(s.get(key(0), kNow).has_value());  // source 1's oldest went
  for (int i = 1; i < 7; ++i)
    EXPECT_TRUE(s.get(key(i), kNow).has_value()) << i;
  EXPECT_EQ(s.evictions(), 1u);
  EXPECT_LE(s.total_bytes(), limits.max_total_bytes);
}

TEST(Storage, MaxKeysLimitPlusOne) {
  StorageLimits limits;
  limits.max_keys = 3;
  Storage s(limits);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(s.store(key(i), std::nullopt, {"v", kNow + 100}, source(i), kNow),
              StoreStatus::kStored);
  EXPECT_EQ(s.store(key(3), std::nullopt, {"v", kNow + 100}, source(3), kNow),
            StoreStatus::kStored);
  EXPECT_EQ(s.num_keys(), 3u);  // one was evicted to make room
}

TEST(Storage, SubkeysPerKeyLimitPlusOne) {
  StorageLimits limits;
  limits.max_subkeys_per_key = 4;
  Storage s(limits);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(s.store(key(1), std::to_string(i), {"v", kNow + 100}, source(1), kNow),
              StoreStatus::kStored);
  }
  EXPECT_EQ(s.store(key(1), "4", {"v", kNow + 100}, source(1), kNow), StoreStatus::kTooManySubkeys);
  EXPECT_EQ(s.store(key(1), "0", {"v", kNow + 200}, source(1), kNow),
            StoreStatus::kStored);  // existing one: fine
}

TEST(Storage, ItemLargerThanAnyQuotaIsTooLarge) {
  StorageLimits limits;
  limits.max_bytes_per_source = 100;
  Storage s(limits);
  EXPECT_EQ(s.store(key(1), std::nullopt, {std::string(100, 'x'), kNow + 10}, source(1), kNow),
            StoreStatus::kTooLarge);
}

TEST(Storage, IndexStaysBoundedUnderRewrites) {
  Storage s(StorageLimits{});
  for (int i = 0; i < 20000; ++i) {
    ASSERT_EQ(s.store(key(i % 10), std::nullopt, {"v", kNow + 100 + i}, source(1), kNow),
              StoreStatus::kStored);
  }
  EXPECT_EQ(s.num_items(), 10u);
  s.expire(kNow + 100 + 19990);
  EXPECT_EQ(s.num_items(), 9u);
}

TEST(Storage, RangeVisitsKeysInOrder) {
  Storage s(StorageLimits{});
  std::vector<NodeId> keys;
  for (int i = 0; i < 50; ++i) {
    keys.push_back(key(i));
    ASSERT_EQ(s.store(key(i), std::nullopt, {"v", kNow + 100}, source(1), kNow),
              StoreStatus::kStored);
  }
  std::sort(keys.begin(), keys.end());
  std::vector<NodeId> seen;
  s.for_each_in_range(keys[10], keys[19], kNow, [&](const NodeId& id, const Record&) {
    seen.push_back(id);
    return true;
  });
  EXPECT_EQ(seen, std::vector<NodeId>(keys.begin() + 10, keys.begin() + 20));
}

}  // namespace
}  // namespace hivemind::dht
