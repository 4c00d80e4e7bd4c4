#include <algorithm>

#include <hivemind/common/clock.h>

namespace hivemind {

DhtTime SystemClock::dht_now() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

const SystemClock& SystemClock::instance() {
  static const SystemClock clock;
  return clock;
}

ManualClock::ManualClock(DhtTime dht_start) : dht_ms_(dht_start) {}

SteadyTime ManualClock::steady_now() const {
  return SteadyTime(Milliseconds(steady_ms_.load(std::memory_order_acquire)));
}

DhtTime ManualClock::dht_now() const {
  return dht_ms_.load(std::memory_order_acquire);
}

void ManualClock::advance(Milliseconds by) {
  steady_ms_.fetch_add(by.count(), std::memory_order_acq_rel);
  dht_ms_.fetch_add(by.count(), std::memory_order_acq_rel);
}

void ManualClock::skew_dht(Milliseconds by) {
  dht_ms_.fetch_add(by.count(), std::memory_order_acq_rel);
}

Milliseconds Deadline::remaining(const Clock& clock) const {
  if (is_never()) return Milliseconds::max();
  auto left = std::chrono::duration_cast<Milliseconds>(at_ - clock.steady_now());
  return std::max(left, Milliseconds(0));
}

}  // namespace hivemind
