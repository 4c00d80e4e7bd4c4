#include <gtest/gtest.h>

#include <hivemind/common/clock.h>

namespace hivemind {
namespace {

TEST(ManualClockTest, MovesOnlyWhenAdvanced) {
  ManualClock clock(1000);
  SteadyTime t0 = clock.steady_now();
  EXPECT_EQ(clock.dht_now(), 1000);
  EXPECT_EQ(clock.steady_now(), t0);
  clock.advance(Milliseconds(250));
  EXPECT_EQ(clock.dht_now(), 1250);
  EXPECT_EQ(clock.steady_now() - t0, Milliseconds(250));
}

TEST(ManualClockTest, SkewMovesDhtTimeAlone) {
  ManualClock clock(0);
  SteadyTime t0 = clock.steady_now();
  clock.skew_dht(Milliseconds(-5000));
  EXPECT_EQ(clock.dht_now(), -5000);
  EXPECT_EQ(clock.steady_now(), t0);
}

TEST(DeadlineTest, ExpiresOnVirtualTime) {
  ManualClock clock;
  Deadline deadline = Deadline::after(Milliseconds(100), clock);
  EXPECT_FALSE(deadline.expired(clock));
  EXPECT_EQ(deadline.remaining(clock), Milliseconds(100));
  clock.advance(Milliseconds(99));
  EXPECT_FALSE(deadline.expired(clock));
  clock.advance(Milliseconds(1));
  EXPECT_TRUE(deadline.expired(clock));
  clock.advance(Milliseconds(50));
  EXPECT_EQ(deadline.remaining(clock), Milliseconds(0));
}

TEST(DeadlineTest, NeverNeverExpiresAndOrders) {
  ManualClock clock;
  Deadline never = Deadline::never();
  EXPECT_TRUE(never.is_never());
  clock.advance(Milliseconds(1'000'000'000));
  EXPECT_FALSE(never.expired(clock));
  EXPECT_LT(Deadline::after(Milliseconds(1), clock), never);
}

TEST(SystemClockTest, DhtTimeIsUnixMilliseconds) {
  // 2020-01-01 in ms: any sane machine is past it, and far from 2100.
  DhtTime now = SystemClock::instance().dht_now();
  EXPECT_GT(now, 1'577'836'800'000);
  EXPECT_LT(now, 4'102'444'800'000);
}

}  // namespace
}  // namespace hivemind
