#include <atomic>
#include <memory>
#include <mutex>

#include <hivemind/common/wait_interrupt.h>

namespace hivemind {
namespace {

// The hook is read by every polling wait and replaced rarely (at import, at exit): a shared_ptr
// swapped under a mutex, with an atomic flag so that waits without a hook never take the mutex.
std::mutex hook_mutex;
std::shared_ptr<const std::function<void()>> hook;
std::atomic<bool> installed{false};

}  // namespace

void set_wait_interrupt_hook(std::function<void()> fn) {
  std::lock_guard lock(hook_mutex);
  if (fn) {
    hook = std::make_shared<const std::function<void()>>(std::move(fn));
    installed.store(true, std::memory_order_release);
  } else {
    hook.reset();
    installed.store(false, std::memory_order_release);
  }
}

bool wait_interrupt_hook_installed() {
  return installed.load(std::memory_order_acquire);
}

void poll_wait_interrupt() {
  if (!wait_interrupt_hook_installed()) return;
  std::shared_ptr<const std::function<void()>> current;
  {
    std::lock_guard lock(hook_mutex);
    current = hook;
  }
  if (current) (*current)();
}

SteadyTime next_wait_interrupt_poll(SteadyTime deadline) {
  if (!wait_interrupt_hook_installed()) return deadline;
  const SteadyTime now = SteadyClock::now();
  if (deadline - now <= kWaitInterruptPollPeriod) return deadline;
  return now + kWaitInterruptPollPeriod;
}

}  // namespace hivemind
