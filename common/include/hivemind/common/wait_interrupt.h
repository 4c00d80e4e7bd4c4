// A process-wide hook that long blocking waits poll, so that an embedding runtime can abandon them:
// the Python package installs one that runs Python's signal handlers, so Ctrl-C interrupts a
// trainer blocked on remote experts within a poll period instead of at the call's deadline.
//
// Waiting code calls poll_wait_interrupt() at least every kWaitInterruptPollPeriod while it blocks;
// the hook throws to abandon the wait (the exception propagates out of the blocking call, which
// must be exception-safe at that point). Without a hook, waits sleep straight to their deadline
// and the poll costs one relaxed atomic load.
#pragma once

#include <functional>

#include <hivemind/common/clock.h>

namespace hivemind {

inline constexpr Milliseconds kWaitInterruptPollPeriod{50};

// Installs `hook` (replacing any earlier one); an empty function removes it. The hook runs on the
// waiting thread and must be thread-safe.
void set_wait_interrupt_hook(std::function<void()> hook);

// True when a hook is installed: waits then sleep in slices of kWaitInterruptPollPeriod.
bool wait_interrupt_hook_installed();

// Runs the hook, if any; it may throw.
void poll_wait_interrupt();

// How long to sleep before the next poll: `deadline` itself without a hook, else at most one poll
// period from now.
SteadyTime next_wait_interrupt_poll(SteadyTime deadline);

// The polling wait itself: calls `wait_until(SteadyTime) -> bool` (true once what it waits for has
// happened) in slices of at most one poll period, running the hook between slices, until it returns
// true (then true) or `deadline` passes (then false). The hook's exception propagates; the
// waited-for state must outlive an abandoned wait (shared with whoever completes it).
template <typename WaitUntil>
bool wait_polling_interrupt(SteadyTime deadline, WaitUntil&& wait_until) {
  while (true) {
    const SteadyTime until = next_wait_interrupt_poll(deadline);
    if (wait_until(until)) return true;
    if (until >= deadline) return false;
    poll_wait_interrupt();
  }
}

}  // namespace hivemind
