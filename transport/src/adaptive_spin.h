// AdaptiveSpin: how long the I/O loop busy-polls after its last event before it arms and sleeps.
//
// Spinning pays when the next event comes within the spin: a reply on an otherwise idle core is
// seen without a wake-up (about 80 us on the 2-vCPU VMs). It costs a core when events are further
// apart, and on an oversubscribed machine that core is the one the peer or the compute thread
// needed: the nop throughput benchmark (8 client processes and a server on 2 cores) ran at 98-108k
// samples/s with every loop spinning 50 us and at 133k with none spinning. So each loop learns from
// its own spins: a spin that catches an event keeps (or restores) the configured budget; one that
// ends in a sleep drops it to zero, and at zero every kProbeEvery-th idle period spins the
// configured time once more, so a loop whose events come quickly again finds out. (The length of a
// sleep says little: it includes the wake-up latency, longer than the spin itself on these VMs.)
#pragma once

#include <algorithm>
#include <chrono>

namespace hivemind::transport::detail {

class AdaptiveSpin {
 public:
  using Duration = std::chrono::nanoseconds;
  static constexpr int kProbeEvery = 8;

  explicit AdaptiveSpin(Duration configured) : spin_(std::max(configured, Duration::zero())) {}

  // How long to spin in the idle period that starts now.
  Duration budget() const { return !off_ || sleeps_off_ >= kProbeEvery ? spin_ : Duration::zero(); }

  // The spin found work before its budget ran out.
  void caught() {
    off_ = false;
    sleeps_off_ = 0;
  }

  // The spin used its whole budget without work, and the loop went to sleep.
  void missed() {
    if (!off_) {
      off_ = true;
      return;
    }
    // Counts the sleeps since the last probe; a probe that missed starts the count again.
    sleeps_off_ = sleeps_off_ >= kProbeEvery ? 0 : sleeps_off_ + 1;
  }

 private:
  Duration spin_;       // the configured spin
  bool off_ = false;    // the last spin ended in a sleep
  int sleeps_off_ = 0;  // sleeps since spinning went off or since the last probe
};

}  // namespace hivemind::transport::detail
