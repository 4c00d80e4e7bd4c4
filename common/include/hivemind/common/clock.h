// Clock: the only source of time for the library, injectable so tests run on virtual time.
//
// Two kinds of time, never mixed:
//  - steady time for local deadlines and timers (monotonic, meaningless across processes);
//  - DHT time: wall-clock milliseconds since the Unix epoch, shared between nodes for record
//    expirations.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace hivemind {

using SteadyClock = std::chrono::steady_clock;
using SteadyTime = SteadyClock::time_point;
using Milliseconds = std::chrono::milliseconds;

// Milliseconds since the Unix epoch. Integer on purpose: the same value on every node and on the
// wire.
using DhtTime = int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual SteadyTime steady_now() const = 0;
  virtual DhtTime dht_now() const = 0;
};

// The real clocks of the machine.
class SystemClock final : public Clock {
 public:
  SteadyTime steady_now() const override { return SteadyClock::now(); }
  DhtTime dht_now() const override;

  // A process-wide instance for code that was not handed a clock.
  static const SystemClock& instance();
};

// A clock that moves only when told to. Both times advance together. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(DhtTime dht_start = 1'700'000'000'000);

  SteadyTime steady_now() const override;
  DhtTime dht_now() const override;

  void advance(Milliseconds by);
  // Moves DHT time alone, to model a peer whose wall clock is skewed.
  void skew_dht(Milliseconds by);

 private:
  std::atomic<int64_t> steady_ms_{0};
  std::atomic<int64_t> dht_ms_;
};

// A point in steady time by which an operation must complete. Every wait in the library takes one.
class Deadline {
 public:
  static Deadline after(Milliseconds timeout, const Clock& clock = SystemClock::instance()) {
    return Deadline(clock.steady_now() + timeout);
  }
  static Deadline never() { return Deadline(SteadyTime::max()); }
  explicit Deadline(SteadyTime at) : at_(at) {}

  SteadyTime at() const { return at_; }
  bool is_never() const { return at_ == SteadyTime::max(); }
  bool expired(const Clock& clock = SystemClock::instance()) const {
    return clock.steady_now() >= at_;
  }
  // Time left, never negative.
  Milliseconds remaining(const Clock& clock = SystemClock::instance()) const;

  friend bool operator<(Deadline a, Deadline b) { return a.at_ < b.at_; }

 private:
  SteadyTime at_;
};

}  // namespace hivemind
