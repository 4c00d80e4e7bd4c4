// Worker internals shared with the backends (private header).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <hivemind/common/thread_rule.h>
#include <hivemind/transport/worker.h>

#include "auth/auth_gate.h"

// The transport's two thread rules, checked in debug and sanitizer builds (common/thread_rule.h).
// `impl` is the Worker::Impl whose I/O thread the rule is about.
#define HIVEMIND_ASSERT_IN_LOOP(impl) \
  HIVEMIND_CHECK_THREAD_RULE((impl).in_loop(), "on the I/O thread of its worker")
#define HIVEMIND_ASSERT_NOT_IN_LOOP(impl) \
  HIVEMIND_CHECK_THREAD_RULE(!(impl).in_thread(), "off the I/O thread of its worker")

namespace hivemind::transport {

class EndpointBase;
class ListenerBase;
class UcxWorker;

// Something that owns a file descriptor in the worker's epoll set.
class FdHandler {
 public:
  virtual ~FdHandler() = default;
  virtual void on_fd_events(uint32_t events) = 0;
  // True for an fd that only wakes the loop for a Poller (UCX's event fd): its readiness is not
  // work. It stays readable until the Poller is armed again, so counting it as work would keep the
  // loop from ever reaching arm() and sleeping: a busy loop whatever the spin setting.
  virtual bool wake_only() const { return false; }
};

// A progress engine polled by the loop (UCX): progress() returns whether it did work; arm()
// prepares for sleeping and returns false when it must be progressed again first.
class Poller {
 public:
  virtual ~Poller() = default;
  virtual bool progress() = 0;
  virtual bool arm() = 0;
};

struct Worker::Impl {
  std::shared_ptr<Context> context;
  std::string name;
  int epoll_fd = -1;
  int event_fd = -1;
  std::thread thread;
  std::atomic<std::thread::id> thread_id{};
  std::atomic<bool> loop_ended{
      false};  // run() has returned: nothing runs on the I/O thread any more
  std::atomic<bool> stop_requested{false};
  std::atomic<bool> sleeping{false};
  bool stopped = false;  // guarded by stop_mu
  std::mutex stop_mu;

  std::mutex mu;  // guards remote_queue, timers_from_other_threads
  std::vector<Closure> remote_queue;
  std::atomic<bool> remote_pending{
      false};                        // remote_queue may be non-empty (set and cleared under mu)
  std::vector<Closure> local_queue;  // posts made on the I/O thread: no lock, no wakeup
  // What run_queues() is running: swapped with a queue, run, then cleared, so both vectors keep
  // their capacity (a fresh vector per turn cost a reallocation per post).
  std::vector<Closure> running_remote, running_local;

  // Timers: keyed by (time, id) so equal times keep insertion order. Touched on the I/O thread
  // only; other threads go through post().
  std::map<std::pair<SteadyTime, uint64_t>, Closure> timers;
  std::unordered_map<uint64_t, SteadyTime> timer_index;
  std::atomic<uint64_t> next_timer_id{1};

  // epoll tokens -> handlers; a token looked up per event so a handler removed mid-batch is
  // skipped.
  struct FdEntry {
    FdHandler* handler;
    bool wake_only;  // the handler's wake_only(), read once at add_fd (not from a destructor)
  };
  std::unordered_map<uint64_t, FdEntry> fd_handlers;
  uint64_t next_fd_token = 1;
  // Handlers whose readiness is work (sockets), not a mere wake-up (the eventfd, UCX's efd). With
  // none, a busy-polling loop has no reason to ask epoll anything until it goes to sleep.
  size_t work_fds = 0;
  // Busy-poll iterations since the last epoll_wait(0): one that progressed a Poller skips the
  // epoll call (a syscall costs more than a shared-memory message here), at most kMaxFdSkips
  // times in a row so sockets are never starved by a busy Poller.
  static constexpr int kMaxFdSkips = 16;
  int fd_skips = 0;
  // An idle busy-polling turn reads the clock only every kClockEvery-th time: on a VM (kvm-clock)
  // a read costs about as much as the rest of an idle turn, and a turn that finds a message late
  // by that much adds to every hop's latency. Timers and the spin budget then run late by at most
  // kClockEvery idle turns (microseconds). A turn after one that did work always reads it.
  static constexpr int kClockEvery = 16;
  std::vector<Poller*> pollers;

  // Live endpoints and listeners, so they outlive their users until closed; closed at stop().
  std::unordered_set<std::shared_ptr<EndpointBase>> endpoints;
  std::unordered_set<std::shared_ptr<ListenerBase>> listeners;
  AuthGate auth_gate;              // connections waiting for the swarm handshake
  std::unique_ptr<UcxWorker> ucx;  // created on first ucx:// use
  std::string ucx_failure;         // why ucx could not start on this worker

  bool in_thread() const {
    return std::this_thread::get_id() == thread_id.load(std::memory_order_relaxed);
  }
  // Whether the caller may touch what the I/O thread owns: it is the I/O thread, or the loop has
  // ended (run_sync then runs work inline on its caller, and teardown destroys endpoints on
  // whichever thread drops them last). What HIVEMIND_ASSERT_IN_LOOP checks.
  bool in_loop() const { return in_thread() || loop_ended.load(std::memory_order_acquire); }

  // I/O thread only.
  uint64_t add_fd(int fd, uint32_t events, FdHandler* handler);
  void modify_fd(int fd, uint64_t token, uint32_t events);
  void remove_fd(int fd, uint64_t token);
  void defer(Closure fn) {
    HIVEMIND_ASSERT_IN_LOOP(*this);
    local_queue.push_back(std::move(fn));
  }
  // I/O thread only: the timers behind Worker::add_timer / cancel_timer.
  uint64_t add_timer_on_loop(SteadyTime at, Closure fn) {
    HIVEMIND_ASSERT_IN_LOOP(*this);
    uint64_t id = next_timer_id.fetch_add(1);
    timers.emplace(std::make_pair(at, id), std::move(fn));
    timer_index.emplace(id, at);
    return id;
  }
  void cancel_timer_on_loop(uint64_t id) {
    HIVEMIND_ASSERT_IN_LOOP(*this);
    auto it = timer_index.find(id);
    if (it == timer_index.end()) return;
    timers.erase({it->second, id});
    timer_index.erase(it);
  }
  // The UCX worker of this Worker, created on first use; null with the reason in ucx_failure.
  UcxWorker* ucx_worker();

  // Any thread: queue `fn` for the I/O thread (false, `fn` untouched, once the worker is stopping).
  bool post(Closure&& fn);

  ~Impl();  // closes the epoll and event fds

  void run();
  bool run_queues();
  bool run_timers(SteadyTime now);
  bool poll_fds(int timeout_ms);
  void wake();
  void shutdown_on_loop();
};

}  // namespace hivemind::transport
