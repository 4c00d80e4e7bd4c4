// Worker: one I/O thread that owns every socket and UCX call of its endpoints and listeners.
//
// Other threads hand work to it with post(); callbacks run on it and must not block. It busy-polls
// for ContextOptions::spin after the last event, then arms UCX and the sockets and sleeps in
// epoll_wait.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <type_traits>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/transport/authentication.h>
#include <hivemind/transport/closure.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/endpoint.h>
#include <hivemind/transport/listener.h>

namespace hivemind::transport {

class Worker : public std::enable_shared_from_this<Worker> {
 public:
  struct Impl;

  static Result<std::shared_ptr<Worker>> create(std::shared_ptr<Context> context,
                                                std::string name = "hm-io");
  ~Worker();  // stop() and join
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs `fn` on the I/O thread (later, never inline). Thread-safe. Once stop() has begun it
  // returns false and leaves `fn` as it was, neither run nor consumed: a caller that passed a named
  // Closure can still complete what it carries.
  bool post(Closure&& fn);

  // Runs `fn` on the I/O thread at `at` (steady clock). Thread-safe. Returns an id for
  // cancel_timer.
  uint64_t add_timer(SteadyTime at, Closure fn);
  // Thread-safe; a timer that already fired or was canceled is ignored.
  void cancel_timer(uint64_t id);

  bool in_worker_thread() const;

  // Runs `fn` on the I/O thread and waits for its result; runs inline when already there, and
  // inline after the thread has exited when the worker is stopping (so teardown never deadlocks).
  template <typename F>
  auto run_sync(F&& fn) -> std::invoke_result_t<F> {
    using R = std::invoke_result_t<F>;
    if (in_worker_thread()) return fn();
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(fn));
    auto future = task->get_future();
    if (!post([task] { (*task)(); })) {
      stop();  // joins the I/O thread
      (*task)();
    }
    return future.get();
  }

  // Connects to "tcp://h:p", "ucx://h:p" or "auto://h:p". The endpoint is returned at once; sends
  // queue until the connection is up, and a failed connection reports through on_error.
  Result<std::shared_ptr<Endpoint>> connect(const std::string& address,
                                            EndpointCallbacks callbacks);

  // Listens on an address ("tcp://0.0.0.0:0" picks a port and announces a routable address).
  Result<std::shared_ptr<Listener>> listen(const std::string& address, AcceptCallback on_accept);

  // What this worker's swarm handshakes came to (authentication.h). Thread-safe.
  AuthStats auth_stats() const;

  // Closes every endpoint and listener (pending sends fail with kCanceled), then joins the thread.
  // Idempotent; must not be called from the I/O thread.
  void stop();

  const std::shared_ptr<Context>& context() const;
  Impl& impl() { return *impl_; }

 private:
  explicit Worker(std::shared_ptr<Impl> impl);
  // Shared with the I/O thread, which keeps it alive until its loop has ended: a Worker whose last
  // reference is dropped inside one of its own callbacks cannot join itself, so it lets the loop
  // finish on its own instead.
  std::shared_ptr<Impl> impl_;
};

}  // namespace hivemind::transport
