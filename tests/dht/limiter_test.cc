#include <gtest/gtest.h>

#include <hivemind/dht/blacklist.h>
#include <hivemind/dht/rate_limiter.h>

namespace hivemind::dht {
namespace {

SteadyTime at(int ms) {
  return SteadyTime(Milliseconds(ms));
}

TEST(RateLimiter, PerPeerLimitPlusOne) {
  RateLimits limits;
  limits.per_peer_per_second = 10;
  limits.global_per_second = 1000;
  RateLimiter limiter(limits);
  for (int i = 0; i < 10; ++i)
    EXPECT_TRUE(limiter.allow("a", at(0))) << i;
  EXPECT_FALSE(limiter.allow("a", at(0)));
  EXPECT_TRUE(limiter.allow("b", at(0)));  // another peer is unaffected
  EXPECT_FALSE(limiter.allow("a", at(50)));
  EXPECT_TRUE(limiter.allow("a", at(100)));  // 10/s refills one token per 100 ms
}

TEST(RateLimiter, GlobalLimitPlusOne) {
  RateLimits limits;
  limits.per_peer_per_second = 1000;
  limits.global_per_second = 20;
  RateLimiter limiter(limits);
  for (int i = 0; i < 20; ++i)
    EXPECT_TRUE(limiter.allow("p" + std::to_string(i), at(0)));
  EXPECT_FALSE(limiter.allow("fresh", at(0)));
  EXPECT_TRUE(limiter.allow("fresh", at(1000)));
}

TEST(RateLimiter, PruneForgetsIdlePeers) {
  RateLimits limits;
  limits.per_peer_per_second = 10;
  RateLimiter limiter(limits);
  limiter.allow("a", at(0));
  limiter.allow("b", at(0));
  EXPECT_EQ(limiter.tracked_peers(), 2u);
  limiter.prune(at(5000));
  EXPECT_EQ(limiter.tracked_peers(), 0u);
}

TEST(RateLimiter, TrackedPeersAreBounded) {
  RateLimits limits;
  limits.per_peer_per_second = 1;
  limits.global_per_second = 1e9;
  limits.max_tracked_peers = 100;
  RateLimiter limiter(limits);
  for (int i = 0; i < 1000; ++i)
    limiter.allow("p" + std::to_string(i), at(0));
  EXPECT_LE(limiter.tracked_peers(), 100u);
}

TEST(Blacklist, OneLostMessageIsForgiven) {
  Blacklist blacklist(Milliseconds(5000), Milliseconds(12000), 2);
  blacklist.on_failure("x", at(0));
  EXPECT_FALSE(blacklist.is_banned("x", at(0)));
  blacklist.on_success("x");
  blacklist.on_failure("x", at(10));
  EXPECT_FALSE(blacklist.is_banned("x", at(10)));  // the success reset the count
  blacklist.on_failure("x", at(20));
  EXPECT_TRUE(blacklist.is_banned("x", at(20)));
  EXPECT_EQ(blacklist.banned_until("x"), at(5020));
}

TEST(Blacklist, BackoffDoublesAndSuccessClears) {
  Blacklist blacklist(Milliseconds(5000), Milliseconds(12000), 1);
  blacklist.on_failure("x", at(0));
  EXPECT_TRUE(blacklist.is_banned("x", at(4999)));
  EXPECT_FALSE(blacklist.is_banned("x", at(5000)));
  blacklist.on_failure("x", at(2000));  // still banned: the same outage
  EXPECT_EQ(blacklist.banned_until("x"), at(5000));
  blacklist.on_failure("x", at(6000));
  EXPECT_EQ(blacklist.banned_until("x"), at(16000));  // 10 s
  blacklist.on_failure("x", at(20000));
  EXPECT_EQ(blacklist.banned_until("x"), at(32000));  // capped at 12 s
  blacklist.on_success("x");
  EXPECT_FALSE(blacklist.is_banned("x", at(20001)));
  blacklist.on_failure("x", at(40000));
  EXPECT_EQ(blacklist.banned_until("x"), at(45000));  // back to the base
  EXPECT_FALSE(blacklist.is_banned("other", at(0)));
}

}  // namespace
}  // namespace hivemind::dht
