// The I/O loop's spin budget: a spin that ends in a sleep drops it to zero, a spin that catches an
// event restores it, and at zero a periodic probe spins the configured time. Pure state: no clock,
// no threads.
#include "adaptive_spin.h"

#include <gtest/gtest.h>

namespace hivemind::transport::detail {
namespace {

using namespace std::chrono_literals;

TEST(AdaptiveSpin, StartsAtTheConfiguredSpin) {
  EXPECT_EQ(AdaptiveSpin(50us).budget(), 50us);
  EXPECT_EQ(AdaptiveSpin(0us).budget(), 0us);
  EXPECT_EQ(AdaptiveSpin(-5us).budget(), 0us);  // a negative setting never spins
}

TEST(AdaptiveSpin, AMissDropsTheBudgetToZeroAndACatchRestoresIt) {
  AdaptiveSpin spin(50us);
  spin.caught();
  EXPECT_EQ(spin.budget(), 50us);
  spin.missed();
  EXPECT_EQ(spin.budget(), 0ns);
  for (int i = 0; i < AdaptiveSpin::kProbeEvery; ++i)
    spin.missed();
  ASSERT_EQ(spin.budget(), 50us);  // the probe
  spin.caught();
  EXPECT_EQ(spin.budget(), 50us);
  spin.caught();
  EXPECT_EQ(spin.budget(), 50us);
}

TEST(AdaptiveSpin, AtZeroEveryEighthIdlePeriodProbes) {
  AdaptiveSpin spin(50us);
  spin.missed();
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < AdaptiveSpin::kProbeEvery; ++i) {
      EXPECT_EQ(spin.budget(), 0ns) << "round " << round << ", sleep " << i;
      spin.missed();
    }
    EXPECT_EQ(spin.budget(), 50us) << "round " << round;  // the probe
    spin.missed();                                        // it missed: count again
  }
  // A probe that catches an event restores spinning until the next miss.
  for (int i = 0; i < AdaptiveSpin::kProbeEvery; ++i)
    spin.missed();
  ASSERT_EQ(spin.budget(), 50us);
  spin.caught();
  EXPECT_EQ(spin.budget(), 50us);
  spin.missed();
  EXPECT_EQ(spin.budget(), 0ns);
}

TEST(AdaptiveSpin, ZeroNeverSpinsNotEvenToProbe) {
  AdaptiveSpin spin(0us);
  for (int i = 0; i < 3 * AdaptiveSpin::kProbeEvery; ++i) {
    EXPECT_EQ(spin.budget(), 0ns);
    spin.missed();
  }
  spin.caught();
  EXPECT_EQ(spin.budget(), 0ns);
}

}  // namespace
}  // namespace hivemind::transport::detail
