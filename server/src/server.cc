// server::Server: builds its parts in order, runs their periodic work on one maintenance thread,
// and drains them on shutdown.
#include <algorithm>
#include <cmath>
#include <random>

#include <fmt/format.h>

#include <hivemind/common/logging.h>
#include <hivemind/server/server.h>

#include "server_impl.h"

namespace hivemind::server {

namespace {

auto log() {
  return logger("server");
}

Milliseconds seconds(double s) {
  return Milliseconds(static_cast<int64_t>(std::llround(s * 1000.0)));
}

// The uids to host: the explicit ones, the whole grid, or (hivemind's behaviour for a pattern and a
// count) `num_experts` uids of the grid that no live server holds yet, at random.
Result<std::vector<std::string>> choose_uids(const ServerOptions& options,
                                             const ExpertAnnouncer& announcer) {
  if (!options.expert_uids.empty() || options.num_experts == 0 || !announcer.node())
    return server_expert_uids(options);
  auto grid = expand_expert_pattern(options.expert_pattern, 0, 0);
  if (!grid.is_ok()) return server_expert_uids(options);
  auto free_uids = announcer.undeclared(*grid, Deadline::after(Milliseconds(10000)));
  if (!free_uids.is_ok()) {
    log()->warn("could not ask the DHT which uids are taken ({}); picking at random",
                free_uids.status().to_string());
    return server_expert_uids(options);
  }
  if (static_cast<int>(free_uids->size()) < options.num_experts) {
    return invalid_argument_error(
        fmt::format("--expert_pattern '{}' has only {} uid(s) not already served in the DHT; "
                    "--num_experts is {}",
                    options.expert_pattern, free_uids->size(), options.num_experts));
  }
  std::random_device entropy;
  std::mt19937_64 rng((static_cast<uint64_t>(entropy()) << 32) ^ entropy());
  std::shuffle(free_uids->begin(), free_uids->end(), rng);
  free_uids->resize(static_cast<size_t>(options.num_experts));
  std::sort(free_uids->begin(), free_uids->end());
  return free_uids;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  if (impl_) (void)impl_->shutdown(seconds(impl_->options.grace_period));
}

Result<std::unique_ptr<Server>> Server::create(ServerOptions options) {
  HIVEMIND_RETURN_IF_ERROR(validate(options));
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  // Resolved once, here, so that every part below (placement, experts, logs) sees the real device.
  const DeviceChoice device = choose_device(impl->options.device, cuda_device_visible());
  logger("server")->info("device {} ({})", device.device, device.reason);
  impl->options.device = device.device;
  const ServerOptions& o = impl->options;
  // Placement first (the I/O thread is bound as it starts), then the network and the DHT (which
  // tells which uids of a pattern are free), then the experts.
  HIVEMIND_ASSIGN_OR_RETURN(impl->placement, ThreadPlacement::plan(o));
  HIVEMIND_ASSIGN_OR_RETURN(impl->network, ServerNetwork::listen(o, impl->placement.io_cpus));
  HIVEMIND_ASSIGN_OR_RETURN(impl->announcer, ExpertAnnouncer::join(o, *impl->network));
  HIVEMIND_ASSIGN_OR_RETURN(std::vector<std::string> uids, choose_uids(o, *impl->announcer));
  HIVEMIND_ASSIGN_OR_RETURN(
      impl->experts, HostedExperts::create(o, std::move(uids), impl->placement, impl->metrics));
  impl->methods =
      std::make_unique<ExpertMethods>(*impl->experts, o.max_batch_size, o.intra_op_threads);
  HIVEMIND_RETURN_IF_ERROR(impl->start_metrics());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Status Server::Impl::start_metrics() {
  for (const auto& [uid, e] : experts->all()) {
    std::shared_ptr<runtime::TaskPool> forward = e.forward, backward = e.backward;
    metrics.gauge_callback("hivemind_expert_queue_depth", "Requests waiting in the expert's queue",
                           {{"expert", uid}, {"method", "forward"}}, [forward] {
                             return static_cast<double>(forward->stats().queued_tasks);
                           });
    metrics.gauge_callback("hivemind_expert_queue_depth", "Requests waiting in the expert's queue",
                           {{"expert", uid}, {"method", "backward"}}, [backward] {
                             return static_cast<double>(backward->stats().queued_tasks);
                           });
    std::shared_ptr<runtime::ExpertBackend> backend = e.backend;
    metrics.counter_callback("hivemind_expert_updates_total", "Optimizer steps taken by the expert",
                             {{"expert", uid}},
                             [backend] { return static_cast<double>(backend->update_count()); });
  }
  metrics.gauge("hivemind_server_experts", "Experts this server hosts")
      .set(static_cast<double>(experts->all().size()));
  // The listener's frames: expert calls, "info" and the DHT's requests, which share it.
  std::shared_ptr<transport::rpc::Server> listener = network->listener();
  const MetricLabels transport_label{{"transport", listener->transport()}};
  metrics.counter_callback("hivemind_transport_requests_total",
                           "Request frames received by the server's listener", transport_label,
                           [listener] { return static_cast<double>(listener->stats().requests); });
  metrics.counter_callback(
      "hivemind_transport_error_replies_total", "Replies that carried an error", transport_label,
      [listener] { return static_cast<double>(listener->stats().error_replies); });
  metrics.counter_callback("hivemind_transport_bytes_received_total",
                           "Bytes of request frames received", transport_label, [listener] {
                             return static_cast<double>(listener->stats().bytes_received);
                           });
  metrics.counter_callback(
      "hivemind_transport_bytes_sent_total", "Bytes of reply frames sent", transport_label,
      [listener] { return static_cast<double>(listener->stats().bytes_sent); });
  // The swarm handshake on that listener (docs/security.md): refusals by reason.
  std::shared_ptr<transport::Worker> worker = network->worker();
  metrics.counter_callback(
      "hivemind_transport_authenticated_total", "Connections that completed the swarm handshake",
      transport_label,
      [worker] { return static_cast<double>(worker->auth_stats().authenticated); });
  const std::pair<const char*, uint64_t transport::AuthStats::*> refusals[] = {
      {"key_mismatch", &transport::AuthStats::key_mismatch},
      {"unauthenticated", &transport::AuthStats::unauthenticated},
      {"timed_out", &transport::AuthStats::timed_out},
      {"rate_limited", &transport::AuthStats::rate_limited},
      {"evicted", &transport::AuthStats::evicted},
      {"protocol_error", &transport::AuthStats::protocol_errors}};
  for (const auto& [reason, field] : refusals) {
    metrics.counter_callback(
        "hivemind_transport_auth_refusals_total",
        "Connections refused or cut by the swarm handshake, by reason",
        {{"transport", listener->transport()}, {"reason", reason}},
        [worker, field = field] { return static_cast<double>(worker->auth_stats().*field); });
  }
  if (announcer->node() != nullptr) {
    // Read through the announcer at each scrape: after shutdown() the node is gone (the family
    // then reads 0), and metrics_text() may still be called. shutdown() stops the HTTP server
    // before the node leaves, so no scrape races the node's destruction.
    metrics.gauge_callback(
        "hivemind_dht_routing_table_size", "Peers in the routing table of the server's DHT node",
        {}, [announcer = announcer.get()] {
          const dht::Dht* node = announcer->node();
          return node != nullptr ? static_cast<double>(node->peers().size()) : 0.0;
        });
  }
  if (options.metrics_port < 0) return Status::ok();
  MetricsHttpServerOptions http;
  http.bind_address = options.metrics_host;
  http.port = static_cast<uint16_t>(options.metrics_port);
  auto started = MetricsHttpServer::start(metrics, http);
  if (!started.is_ok()) return started.status().with_context("--metrics-port");
  metrics_http = std::move(started).value();
  log()->info("metrics at http://{}/metrics", metrics_http->address());
  return Status::ok();
}

Status Server::start() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.mutex);
    if (s.started) return Status::ok();
    s.started = true;
  }
  HIVEMIND_RETURN_IF_ERROR(s.experts->start());
  s.methods->serve_on(*s.network->listener());
  Status declared = s.declare();
  if (!declared.is_ok())
    log()->warn("first declaration failed (retrying every update_period): {}",
                declared.to_string());
  s.stats.start(SteadyClock::now());
  s.maintenance = std::thread([&s] { s.maintenance_loop(); });
  log()->info("serving {} expert(s) at {}", s.experts->uids().size(), s.network->address());
  return Status::ok();
}

Status Server::Impl::declare() {
  return announcer->declare(experts->uids(), network->address());
}

void Server::Impl::maintenance_loop() {
  SteadyTime now = SteadyClock::now();
  SteadyTime next_declare = now + seconds(options.update_period);
  SteadyTime next_checkpoint = options.checkpoint_dir.empty()
                                   ? SteadyTime::max()
                                   : now + seconds(options.checkpoint_interval);
  SteadyTime next_stats = options.stats_report_interval > 0
                              ? now + seconds(options.stats_report_interval)
                              : SteadyTime::max();
  std::unique_lock lock(mutex);
  while (!stop_maintenance) {
    now = SteadyClock::now();
    if (checkpoint_requested || now >= next_checkpoint) {
      const bool requested = checkpoint_requested;
      checkpoint_requested = false;
      lock.unlock();
      Status s = experts->checkpoint_all();
      if (requested || !s.is_ok()) {
        if (s.is_ok())
          log()->info("checkpoint written ({} expert(s)) on request", experts->uids().size());
        else
          log()->error("checkpoint failed: {}", s.to_string());
      }
      lock.lock();
      if (now >= next_checkpoint) next_checkpoint = now + seconds(options.checkpoint_interval);
      continue;
    }
    if (now >= next_declare) {
      lock.unlock();
      Status s = declare();
      if (!s.is_ok()) log()->warn("declaring experts failed: {}", s.to_string());
      lock.lock();
      next_declare = now + seconds(options.update_period);
      continue;
    }
    if (now >= next_stats) {
      lock.unlock();
      stats.report(*experts);
      lock.lock();
      next_stats = now + seconds(options.stats_report_interval);
      continue;
    }
    cv.wait_until(lock, std::min({next_declare, next_checkpoint, next_stats}));
  }
}

Status Server::Impl::shutdown(Milliseconds grace) {
  std::lock_guard guard(shutdown_mutex);
  if (shutdown_result) return *shutdown_result;
  const SteadyTime start = SteadyClock::now();
  const Deadline deadline(start + grace);
  // Leave part of the grace period for the checkpoint.
  const Deadline drain_deadline(start + grace * 3 / 4);
  if (methods) methods->refuse_new_calls();  // new requests get Unavailable from now on
  {
    std::lock_guard lock(mutex);
    stop_maintenance = true;  // no more declarations: the records expire on their own
    shutdown_requested = true;
  }
  cv.notify_all();
  if (maintenance.joinable()) maintenance.join();
  Status drained = experts ? experts->drain(drain_deadline) : Status::ok();
  // Queued and in-flight batches are done; wait until their replies have left.
  if (network && !network->wait_replies_sent(deadline))
    log()->warn("grace period over with replies still unsent; closing their connections");
  Status saved = experts ? experts->checkpoint_all() : Status::ok();
  if (metrics_http) metrics_http->stop();  // its callbacks read the DHT node and the listener
  if (network) network->stop_listening();
  if (announcer) announcer->leave();
  if (network) network->stop();
  const double took = std::chrono::duration<double>(SteadyClock::now() - start).count();
  if (!drained.is_ok()) log()->warn("drain: {}", drained.to_string());
  if (!saved.is_ok()) log()->error("final checkpoint failed: {}", saved.to_string());
  log()->info("server stopped in {:.2f} s{}", took,
              options.checkpoint_dir.empty() ? "" : ", experts checkpointed");
  shutdown_result = !saved.is_ok() ? saved : drained;
  return *shutdown_result;
}

Server::Impl::~Impl() {
  (void)shutdown(seconds(options.grace_period));
  if (experts) experts->stop();
}

// ---------------------------------------------------------------------------------------------------
std::string Server::address() const {
  return impl_->network->address();
}

std::string Server::dht_address() const {
  return impl_->announcer->dht_address();
}

std::shared_ptr<dht::Dht> Server::dht() const {
  return impl_->announcer ? impl_->announcer->shared_node() : nullptr;
}

const std::vector<std::string>& Server::expert_uids() const {
  return impl_->experts->uids();
}

std::shared_ptr<runtime::ExpertBackend> Server::backend(const std::string& uid) const {
  const HostedExpert* expert = impl_->experts->find(uid);
  return expert ? expert->backend : nullptr;
}

std::string Server::metrics_address() const {
  return impl_->metrics_http ? "http://" + impl_->metrics_http->address() + "/metrics" : "";
}

std::string Server::metrics_text() const {
  return impl_->metrics.render();
}

std::string Server::binding() const {
  return impl_->placement.description;
}

std::vector<ExpertStats> Server::stats() const {
  std::vector<ExpertStats> out;
  for (const auto& [uid, e] : impl_->experts->all())
    out.push_back({uid, e.forward->stats(), e.backward->stats()});
  return out;
}

void Server::request_checkpoint() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->checkpoint_requested = true;
  }
  impl_->cv.notify_all();
}

void Server::request_shutdown() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->shutdown_requested = true;
  }
  impl_->cv.notify_all();
}

Status Server::wait() {
  {
    std::unique_lock lock(impl_->mutex);
    impl_->cv.wait(lock, [&] { return impl_->shutdown_requested; });
  }
  return shutdown(seconds(impl_->options.grace_period));
}

Status Server::checkpoint_all() {
  return impl_->experts->checkpoint_all();
}

Status Server::shutdown(Milliseconds grace) {
  return impl_->shutdown(grace);
}

}  // namespace hivemind::server
