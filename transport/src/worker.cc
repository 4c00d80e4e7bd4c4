#include <cerrno>
#include <cstring>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <hivemind/common/logging.h>
#include <hivemind/transport/worker.h>

#include "adaptive_spin.h"
#include "endpoint_base.h"
#include "tcp/tcp_backend.h"
#include "ucx/ucx_backend.h"
#include "worker_impl.h"

namespace hivemind::transport {
namespace {

// I/O thread: the backend's endpoint for `addr`.
Result<std::shared_ptr<Endpoint>> dial(Worker::Impl& impl, const Address& addr,
                                       const std::string& address, EndpointCallbacks callbacks) {
  if (addr.scheme != Scheme::kTcp) {
    UcxWorker* ucx = impl.ucx_worker();
    if (ucx != nullptr) return ucx->connect(addr, std::move(callbacks));
    if (addr.scheme == Scheme::kUcx) {
      return unavailable_error("cannot dial " + address + ": UCX unavailable (" + impl.ucx_failure +
                               ")");
    }
    logger("transport")
        ->info("auto:// dials {} over TCP: UCX unavailable ({})", address, impl.ucx_failure);
  }
  return tcp_connect(impl, addr, std::move(callbacks));
}

// I/O thread: the backend's listener for `addr`.
Result<std::shared_ptr<Listener>> listen_on_loop(Worker::Impl& impl, const Address& addr,
                                                 const std::string& address,
                                                 const AcceptCallback& on_accept) {
  if (addr.scheme != Scheme::kTcp) {
    UcxWorker* ucx = impl.ucx_worker();
    if (ucx != nullptr) {
      auto listener = ucx->listen(addr, on_accept);
      if (listener.is_ok() || addr.scheme == Scheme::kUcx) return listener;
      logger("transport")
          ->warn("auto:// listens on {} over TCP: UCX listener failed ({})", address,
                 listener.status().to_string());
    } else if (addr.scheme == Scheme::kUcx) {
      return unavailable_error("cannot listen on " + address + ": UCX unavailable (" +
                               impl.ucx_failure + ")");
    } else {
      logger("transport")
          ->warn("auto:// listens on {} over TCP: UCX unavailable ({})", address, impl.ucx_failure);
    }
  }
  return tcp_listen(impl, addr, on_accept);
}

}  // namespace

Result<std::shared_ptr<Worker>> Worker::create(std::shared_ptr<Context> context, std::string name) {
  if (!context) return invalid_argument_error("Worker::create needs a Context");
  auto impl = std::make_shared<Impl>();
  impl->context = std::move(context);
  impl->name = std::move(name);
  impl->epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (impl->epoll_fd < 0) return errno_error("epoll_create1", errno);
  impl->event_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl->event_fd < 0) {
    int err = errno;
    ::close(impl->epoll_fd);
    return errno_error("eventfd", err);
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // token 0: the wakeup eventfd
  if (::epoll_ctl(impl->epoll_fd, EPOLL_CTL_ADD, impl->event_fd, &ev) != 0) {
    int err = errno;
    ::close(impl->event_fd);
    ::close(impl->epoll_fd);
    return errno_error("epoll_ctl", err);
  }
  std::shared_ptr<Worker> worker(new Worker(impl));
  std::promise<void> started;
  auto started_future = started.get_future();
  impl->thread = std::thread([impl, &started] {
    impl->thread_id.store(std::this_thread::get_id());
    started.set_value();
    impl->run();
  });
  started_future.wait();
  return worker;
}

Worker::Worker(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Worker::~Worker() {
  if (impl_->in_thread()) {
    // Released from inside one of its own callbacks: the loop stops after this callback returns and
    // the thread, which co-owns the Impl, frees it when it exits.
    std::lock_guard stop_lock(impl_->stop_mu);
    impl_->stopped = true;
    {
      std::lock_guard lock(impl_->mu);
      impl_->stop_requested.store(true);
    }
    impl_->thread.detach();
    return;
  }
  stop();
}

Worker::Impl::~Impl() {
  if (event_fd >= 0) ::close(event_fd);
  if (epoll_fd >= 0) ::close(epoll_fd);
}

const std::shared_ptr<Context>& Worker::context() const {
  return impl_->context;
}

bool Worker::in_worker_thread() const {
  return impl_->in_thread();
}

bool Worker::post(Closure&& fn) {
  return impl_->post(std::move(fn));
}

bool Worker::Impl::post(Closure&& fn) {
  if (in_thread()) {
    local_queue.push_back(std::move(fn));
    return true;
  }
  {
    std::lock_guard lock(mu);
    if (stop_requested.load()) return false;
    remote_queue.push_back(std::move(fn));
    remote_pending.store(true, std::memory_order_release);
  }
  // Pairs with the loop's store of `sleeping` before its final queue check: either the loop sees
  // the item or we see it asleep and wake it.
  if (sleeping.load()) wake();
  return true;
}

uint64_t Worker::add_timer(SteadyTime at, Closure fn) {
  if (impl_->in_thread()) return impl_->add_timer_on_loop(at, std::move(fn));
  uint64_t id = impl_->next_timer_id.fetch_add(1);
  post([impl = impl_.get(), id, at, fn = std::move(fn)]() mutable {
    impl->timers.emplace(std::make_pair(at, id), std::move(fn));
    impl->timer_index.emplace(id, at);
  });
  return id;
}

void Worker::cancel_timer(uint64_t id) {
  if (impl_->in_thread()) {
    impl_->cancel_timer_on_loop(id);
    return;
  }
  post([impl = impl_.get(), id] { impl->cancel_timer_on_loop(id); });
}

AuthStats Worker::auth_stats() const {
  return impl_->auth_gate.stats();
}

void Worker::stop() {
  HIVEMIND_ASSERT_NOT_IN_LOOP(*impl_);
  std::lock_guard stop_lock(impl_->stop_mu);
  if (impl_->stopped) return;
  if (impl_->in_thread()) {  // a release build survives it: the join below would deadlock
    logger("transport")->error("Worker::stop called from its own I/O thread; ignored");
    return;
  }
  impl_->stopped = true;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stop_requested.store(true);
  }
  impl_->wake();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::shared_ptr<Endpoint>> Worker::connect(const std::string& address,
                                                  EndpointCallbacks callbacks) {
  return run_sync([this, &address, &callbacks]() -> Result<std::shared_ptr<Endpoint>> {
    if (impl_->stop_requested.load()) return canceled_error("worker is stopping");
    HIVEMIND_ASSIGN_OR_RETURN(Address addr, parse_address(address));
    HIVEMIND_ASSIGN_OR_RETURN(std::shared_ptr<Endpoint> endpoint,
                              dial(*impl_, addr, address, std::move(callbacks)));
    // Still on the I/O thread, before the endpoint reads a byte or its owner can send one.
    const AuthOptions& auth = impl_->context->options().auth;
    if (auth.swarm_key) {
      Authenticator::attach_initiator(std::static_pointer_cast<EndpointBase>(endpoint),
                                      impl_->auth_gate, auth, address);
    }
    return endpoint;
  });
}

Result<std::shared_ptr<Listener>> Worker::listen(const std::string& address,
                                                 AcceptCallback on_accept) {
  // Every accepted endpoint gets an Authenticator before it reads a byte; with a swarm key, the
  // owner's on_accept runs only once the peer proved the key. The listener's own address (known
  // once it is bound) is what the acceptor declares in the handshake.
  auto listener_address = std::make_shared<std::string>();
  AcceptCallback authenticating_accept =
      [impl = impl_.get(), listener_address,
       on_accept = std::move(on_accept)](const std::shared_ptr<Endpoint>& endpoint) {
        return Authenticator::attach_acceptor(std::static_pointer_cast<EndpointBase>(endpoint),
                                              impl->auth_gate, impl->context->options().auth,
                                              *listener_address, on_accept);
      };
  return run_sync([&]() -> Result<std::shared_ptr<Listener>> {
    if (impl_->stop_requested.load()) return canceled_error("worker is stopping");
    HIVEMIND_ASSIGN_OR_RETURN(Address addr, parse_address(address));
    auto listener = listen_on_loop(*impl_, addr, address, authenticating_accept);
    if (listener.is_ok()) *listener_address = (*listener)->address();
    return listener;
  });
}

// ---- Impl ----

uint64_t Worker::Impl::add_fd(int fd, uint32_t events, FdHandler* handler) {
  HIVEMIND_ASSERT_IN_LOOP(*this);
  uint64_t token = next_fd_token++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) return 0;
  const bool wake_only = handler->wake_only();
  fd_handlers.emplace(token, FdEntry{handler, wake_only});
  if (!wake_only) ++work_fds;
  return token;
}

void Worker::Impl::modify_fd(int fd, uint64_t token, uint32_t events) {
  HIVEMIND_ASSERT_IN_LOOP(*this);
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev);
}

void Worker::Impl::remove_fd(int fd, uint64_t token) {
  HIVEMIND_ASSERT_IN_LOOP(*this);
  ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
  auto it = fd_handlers.find(token);
  if (it == fd_handlers.end()) return;
  if (!it->second.wake_only) --work_fds;
  fd_handlers.erase(it);
}

void Worker::Impl::wake() {
  uint64_t one = 1;
  ssize_t n = ::write(event_fd, &one, sizeof(one));
  (void)n;  // EAGAIN means the counter is already non-zero: the loop wakes anyway
}

UcxWorker* Worker::Impl::ucx_worker() {
  if (ucx) return ucx.get();
  if (!ucx_failure.empty()) return nullptr;
  if (!context->ucx_available()) {
    ucx_failure = context->ucx_unavailable_reason();
    return nullptr;
  }
  auto created = UcxWorker::create(*this);
  if (!created.is_ok()) {
    ucx_failure = created.status().to_string();
    logger("transport")->warn("UCX worker failed to start: {}", ucx_failure);
    return nullptr;
  }
  ucx = std::move(created).value();
  return ucx.get();
}

bool Worker::Impl::run_queues() {
  bool did = false;
  // The flag spares the busy-polling loop a lock per turn; a post that lands after the check is
  // seen on the next turn, or by the locked check before sleeping.
  if (remote_pending.load(std::memory_order_acquire)) {
    {
      std::lock_guard lock(mu);
      running_remote.swap(remote_queue);
      remote_pending.store(false, std::memory_order_relaxed);
    }
    for (auto& fn : running_remote)
      fn();
    did = !running_remote.empty();
    running_remote.clear();
  }
  // Local posts may add more local posts; run them in rounds so a long chain cannot starve I/O.
  for (int round = 0; round < 4 && !local_queue.empty(); ++round) {
    running_local.swap(local_queue);
    for (auto& fn : running_local)
      fn();
    running_local.clear();
    did = true;
  }
  return did;
}

bool Worker::Impl::run_timers(SteadyTime now) {
  bool did = false;
  while (!timers.empty() && timers.begin()->first.first <= now) {
    auto node = timers.extract(timers.begin());
    timer_index.erase(node.key().second);
    node.mapped()();
    did = true;
  }
  return did;
}

bool Worker::Impl::poll_fds(int timeout_ms) {
  epoll_event events[64];
  int n = ::epoll_wait(epoll_fd, events, 64, timeout_ms);
  if (n <= 0) return false;
  bool did = false;
  for (int i = 0; i < n; ++i) {
    uint64_t token = events[i].data.u64;
    if (token == 0) {
      uint64_t value;
      while (::read(event_fd, &value, sizeof(value)) > 0) {
      }
      did = true;  // a post: the queues have work
      continue;
    }
    auto it = fd_handlers.find(token);
    if (it == fd_handlers.end()) continue;
    FdHandler* handler = it->second.handler;
    did |= !it->second.wake_only;  // read first: the handler may remove and destroy itself
    handler->on_fd_events(events[i].events);
  }
  return did;
}

void Worker::Impl::run() {
  auto last_work = SteadyClock::now();
  detail::AdaptiveSpin spin(context->options().spin);
  bool spinning = false;  // an iteration since the last work found nothing
  SteadyTime now = last_work;
  int turns_since_clock = 0;
  while (!stop_requested.load(std::memory_order_relaxed)) {
    bool did = run_queues();
    if (did || !spinning || ++turns_since_clock >= kClockEvery) {
      now = SteadyClock::now();
      turns_since_clock = 0;
    }
    did |= run_timers(now);
    bool progressed = false;
    for (Poller* p : pollers)
      progressed |= p->progress();
    did |= progressed;
    // What a Poller delivered runs on the next iteration's run_queues(): do not put an epoll_wait
    // between the two unless sockets could be waiting (the eventfd and UCX's efd matter only to a
    // sleeping loop, which polls them below).
    if (work_fds > 0 && (!progressed || ++fd_skips >= kMaxFdSkips)) {
      fd_skips = 0;
      did |= poll_fds(0);
    }
    // The turn's start (or, while idle, the last of every kClockEvery turns' clock reads) stands
    // for its end, which moves a spin's end by at most that many turns.
    if (did) {
      if (spinning) spin.caught();
      spinning = false;
      last_work = now;
      continue;
    }
    if (!local_queue.empty()) continue;
    spinning = true;
    if (now - last_work < spin.budget()) continue;

    // Sleep: announce it, re-check the queue, arm UCX, then wait for an fd or the next timer.
    sleeping.store(true);
    bool pending;
    {
      std::lock_guard lock(mu);
      pending = !remote_queue.empty();
    }
    bool armed = !pending;
    for (Poller* p : pollers) {
      if (!armed) break;
      armed = p->arm();
    }
    if (!armed) {
      sleeping.store(false);
      continue;
    }
    spin.missed();
    spinning = false;
    int timeout_ms = -1;
    if (!timers.empty()) {
      auto wait = timers.begin()->first.first - SteadyClock::now();
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
      timeout_ms = static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
    }
    poll_fds(timeout_ms);
    sleeping.store(false);
    last_work = SteadyClock::now();
  }
  shutdown_on_loop();
  loop_ended.store(true, std::memory_order_release);
}

void Worker::Impl::shutdown_on_loop() {
  // Run what was posted before stop, then close everything; closing completes pending sends and
  // reports errors through deferred callbacks, so drain the queues again afterwards.
  run_queues();
  auto listeners_copy = listeners;
  for (auto& l : listeners_copy)
    l->close();
  auto endpoints_copy = endpoints;
  for (auto& e : endpoints_copy)
    e->fail(canceled_error("worker stopped"));
  for (int i = 0; i < 16; ++i) {
    bool did = run_queues();
    for (Poller* p : pollers)
      did |= p->progress();
    if (!did) break;
  }
  endpoints.clear();
  listeners.clear();
  if (ucx) ucx->shutdown();
  // Callbacks posted during UCX shutdown.
  while (run_queues()) {
  }
  ucx.reset();
  timers.clear();
  timer_index.clear();
}

}  // namespace hivemind::transport
