// The lifecycle half of the server: build, listen, declare, checkpoint, report, drain.
#include <algorithm>
#include <cmath>
#include <random>

#include <fmt/format.h>
#include <torch/types.h>

#include <hivemind/common/env.h>
#include <hivemind/common/logging.h>
#include <hivemind/common/text.h>
#include <hivemind/dht/expert_registry.h>
#include <hivemind/runtime/server.h>

#include "server_impl.h"

namespace hivemind::runtime {

namespace {

auto log() {
  return logger("runtime");
}

Milliseconds seconds(double s) {
  return Milliseconds(static_cast<int64_t>(std::llround(s * 1000.0)));
}

torch::Device torch_device(const ComputeDevice& d) {
  return d.kind == ComputeDevice::Kind::kCpu
             ? torch::Device(torch::kCPU)
             : torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(d.index));
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
  impl->declare = impl->options.declare;
  // Placement first (the I/O thread is bound as it starts), then the network (the DHT tells which
  // uids of a pattern are free), then the experts.
  HIVEMIND_RETURN_IF_ERROR(impl->place_threads());
  HIVEMIND_RETURN_IF_ERROR(impl->listen());
  HIVEMIND_RETURN_IF_ERROR(impl->choose_uids());
  HIVEMIND_RETURN_IF_ERROR(impl->build_experts());
  HIVEMIND_RETURN_IF_ERROR(impl->start_metrics());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Status Server::Impl::place_threads() {
  const ServerOptions& o = options;
  for (const std::string& name : split_list(o.device)) {
    HIVEMIND_ASSIGN_OR_RETURN(ComputeDevice d, compute_device_from_string(name));
    devices.push_back(std::move(d));
  }
  RuntimeOptions& ro = runtime_options;
  ro.intra_op_threads = o.intra_op_threads;
  PinningOptions po;
  po.enabled = o.cpu_bind == "auto";
  po.cpu_cores = o.cpu_cores;
  po.cores_per_compute_thread = o.intra_op_threads;
  if (auto launch = read_launch_info(); launch.is_ok()) po.local_rank = launch->local_rank;
  if (!po.enabled) {
    binding_text = "no CPU binding: cpu_bind=none";
  } else if (auto topo = Topology::load_system(); !topo.is_ok()) {
    binding_text = "no CPU binding: " + topo.status().message();
  } else {
    HIVEMIND_ASSIGN_OR_RETURN(BindingPlan plan,
                              plan_binding(*topo, devices, po, detect_existing_binding(*topo)));
    binding_text = plan.describe(devices);
    if (plan.apply) {
      for (size_t i = 0; i < devices.size(); ++i)
        ro.thread_binding[torch_device(devices[i]).str()] = plan.compute[i];
      io_binding = plan.io;
    }
  }
  log()->info("binding: {}", binding_text);
  return Status::ok();
}

Status Server::Impl::choose_uids() {
  if (!options.expert_uids.empty() || options.num_experts == 0) {
    HIVEMIND_ASSIGN_OR_RETURN(uids, server_expert_uids(options));
    return Status::ok();
  }
  // hivemind's behaviour: a server given a pattern and a count picks uids no live server holds yet.
  if (dht) {
    auto grid = expand_expert_pattern(options.expert_pattern, 0, 0);
    if (grid.is_ok()) {
      auto live = dht::get_experts(*dht, *grid, Deadline::after(Milliseconds(10000)));
      if (live.is_ok()) {
        std::vector<std::string> free;
        for (size_t i = 0; i < grid->size(); ++i) {
          if (!(*live)[i]) free.push_back((*grid)[i]);
        }
        if (static_cast<int>(free.size()) < options.num_experts) {
          return invalid_argument_error(
              fmt::format("--expert_pattern '{}' has only {} uid(s) not already served in the DHT; "
                          "--num_experts is {}",
                          options.expert_pattern, free.size(), options.num_experts));
        }
        std::random_device entropy;
        std::mt19937_64 rng((static_cast<uint64_t>(entropy()) << 32) ^ entropy());
        std::shuffle(free.begin(), free.end(), rng);
        free.resize(static_cast<size_t>(options.num_experts));
        std::sort(free.begin(), free.end());
        uids = std::move(free);
        return Status::ok();
      }
      log()->warn("could not ask the DHT which uids are taken ({}); picking at random",
                  live.status().to_string());
    }
  }
  HIVEMIND_ASSIGN_OR_RETURN(uids, server_expert_uids(options));
  return Status::ok();
}

Status Server::Impl::build_experts() {
  const ServerOptions& o = options;
  runtime = std::make_unique<Runtime>(runtime_options);

  OptimizerOptions opt;
  opt.name = o.optimizer;
  opt.lr = o.lr;
  opt.momentum = o.momentum;
  opt.weight_decay = o.weight_decay;
  opt.clip_grad_norm = o.clip_grad_norm;
  if (o.warmup_steps > 0 || o.total_steps > 0)
    opt.lr_schedule = linear_warmup_schedule(o.warmup_steps, o.total_steps);
  ExpertConfig config;
  config.cls = o.expert_cls;
  config.hidden_dim = o.hidden_dim;
  config.seq_len = o.seq_len;
  const quant::Scheme compression = *parse_compression(o.compression);

  for (size_t i = 0; i < uids.size(); ++i) {
    const std::string& uid = uids[i];
    ExpertBackendOptions bo;
    bo.device = torch_device(devices[i % devices.size()]);
    bo.optimizer = opt;
    bo.detect_anomalies = o.detect_anomalies;
    bo.compression = compression;
    HIVEMIND_ASSIGN_OR_RETURN(auto module, make_expert(config, uid, o.seed));
    HIVEMIND_ASSIGN_OR_RETURN(auto backend, ExpertBackend::create(uid, std::move(module), bo));
    if (!o.checkpoint_dir.empty()) {
      const auto file = checkpoint_path(o.checkpoint_dir, uid);
      Status loaded = backend->load_checkpoint(file);
      if (loaded.is_ok()) {
        log()->info("expert {}: resumed from {} ({} updates)", uid, file.string(),
                    backend->update_count());
      } else if (loaded.code() != StatusCode::kNotFound) {
        return loaded.with_context(
            fmt::format("expert {}: cannot resume (move the file away to start fresh)", uid));
      }
    }
    HostedExpert hosted;
    hosted.backend = backend;
    hosted.forward_in = backend->input_schema();
    hosted.backward_in = backend->backward_schema();
    hosted.info.uid = uid;
    hosted.info.expert_cls = o.expert_cls;
    hosted.info.inputs = backend->input_schema();
    hosted.info.outputs = backend->output_schema();
    hosted.info.max_batch_size =
        static_cast<uint32_t>(std::min<int64_t>(o.max_batch_size, UINT32_MAX));
    TaskPoolOptions pool;
    pool.max_batch_size = o.max_batch_size;
    pool.min_batch_size = o.min_batch_size;
    pool.fill_timeout = Milliseconds(o.batch_timeout_ms);
    pool.device = bo.device;
    hosted.forward_metrics = CallMetrics::create(metrics, uid, "forward");
    hosted.backward_metrics = CallMetrics::create(metrics, uid, "backward");
    // One task pool per method: batches assembled from the wire bytes, their sizes observed, then
    // the backend's forward or backward.
    auto add_method_pool = [&](bool backward) -> Result<std::shared_ptr<TaskPool>> {
      const char* method = backward ? "backward" : "forward";
      pool.name = fmt::format("{}/{}", uid, method);
      pool.assemble = make_wire_assembler(backward ? hosted.backward_in : hosted.forward_in,
                                          bo.device, o.detect_anomalies, o.intra_op_threads,
                                          fmt::format("expert '{}' {}", uid, method));
      ExpertBackend* raw = backend.get();
      Histogram* batches = (backward ? hosted.backward_metrics : hosted.forward_metrics).batch_size;
      return runtime->add_pool(pool, [raw, batches, backward](std::vector<torch::Tensor> batch) {
        if (!batch.empty() && batch[0].dim() > 0)
          batches->observe(static_cast<double>(batch[0].size(0)));
        return backward ? raw->backward(std::move(batch)) : raw->forward(std::move(batch));
      });
    };
    HIVEMIND_ASSIGN_OR_RETURN(hosted.forward, add_method_pool(false));
    HIVEMIND_ASSIGN_OR_RETURN(hosted.backward, add_method_pool(true));
    experts.emplace(uid, std::move(hosted));
  }
  log()->info("{} {} expert(s), hidden_dim {}, on {}: {}{}", uids.size(), o.expert_cls,
              o.hidden_dim, o.device,
              fmt::join(uids.begin(), uids.begin() + std::min<size_t>(uids.size(), 8), " "),
              uids.size() > 8 ? " ..." : "");
  return Status::ok();
}

Status Server::Impl::start_metrics() {
  for (const auto& [uid, e] : experts) {
    std::shared_ptr<TaskPool> forward = e.forward, backward = e.backward;
    metrics.gauge_callback("hivemind_expert_queue_depth", "Requests waiting in the expert's queue",
                           {{"expert", uid}, {"method", "forward"}}, [forward] {
                             return static_cast<double>(forward->stats().queued_tasks);
                           });
    metrics.gauge_callback("hivemind_expert_queue_depth", "Requests waiting in the expert's queue",
                           {{"expert", uid}, {"method", "backward"}}, [backward] {
                             return static_cast<double>(backward->stats().queued_tasks);
                           });
    std::shared_ptr<ExpertBackend> backend = e.backend;
    metrics.counter_callback("hivemind_expert_updates_total", "Optimizer steps taken by the expert",
                             {{"expert", uid}},
                             [backend] { return static_cast<double>(backend->update_count()); });
  }
  metrics.gauge("hivemind_server_experts", "Experts this server hosts")
      .set(static_cast<double>(experts.size()));
  // The listener's frames: expert calls, "info" and the DHT's requests, which share it.
  const MetricLabels transport_label{{"transport", rpc->transport()}};
  std::shared_ptr<transport::rpc::Server> listener = rpc;
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
  if (dht) {
    // shutdown() stops the HTTP server before it drops the DHT node, so the pointer outlives every
    // scrape.
    dht::Dht* node = dht.get();
    metrics.gauge_callback("hivemind_dht_routing_table_size",
                           "Peers in the routing table of the server's DHT node", {},
                           [node] { return static_cast<double>(node->peers().size()); });
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

Status Server::Impl::listen() {
  const ServerOptions& o = options;
  HIVEMIND_ASSIGN_OR_RETURN(transport::ContextOptions co, transport::ContextOptions::from_env());
  HIVEMIND_ASSIGN_OR_RETURN(context, transport::Context::create(co));
  HIVEMIND_ASSIGN_OR_RETURN(worker, transport::Worker::create(context, "hm-server-io"));
  if (!io_binding.empty()) {
    CpuList io = io_binding;
    worker->post([io] {
      Status s = bind_current_thread(io);
      if (!s.is_ok()) logger("runtime")->warn("I/O thread not bound: {}", s.to_string());
    });
  }
  const std::string address = fmt::format("{}://{}:{}", o.transport, o.host, o.port);
  auto server = transport::rpc::Server::create(worker, address);
  if (!server.is_ok()) return server.status().with_context(fmt::format("listening on {}", address));
  rpc = std::move(server).value();
  if (!declare) {
    // The DHT node shares the server's transport: method "dht" on the same listener, so the node's
    // address is the experts' endpoint and one port serves both.
    dht::DhtOptions d;
    d.initial_peers = o.initial_peers;
    d.worker = worker;
    d.server = rpc;
    d.client = transport::rpc::Client::create(worker);
    d.own_endpoints = {rpc->address()};
    auto node = dht::Dht::start(std::move(d));
    if (!node.is_ok()) return node.status().with_context("joining the DHT (check --initial_peers)");
    dht = std::move(node).value();
    log()->info("DHT node {} ({})", dht->address(),
                o.initial_peers.empty()
                    ? std::string("new swarm")
                    : fmt::format("joined via {}", fmt::join(o.initial_peers, ", ")));
  }
  return Status::ok();
}

void Server::Impl::register_handlers() {
  rpc->handle(std::string(protocol::kInfoMethod),
              [this](transport::Message m, transport::rpc::Responder r) {
                handle_info(std::move(m), std::move(r));
              });
  rpc->handle(std::string(protocol::kForwardMethod),
              [this](transport::Message m, transport::rpc::Responder r) {
                handle_call(false, std::move(m), std::move(r));
              });
  rpc->handle(std::string(protocol::kBackwardMethod),
              [this](transport::Message m, transport::rpc::Responder r) {
                handle_call(true, std::move(m), std::move(r));
              });
}

Status Server::start() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.mutex);
    if (s.started) return Status::ok();
    s.started = true;
  }
  HIVEMIND_RETURN_IF_ERROR(s.runtime->start());
  s.register_handlers();
  Status declared = s.declare_once();
  if (!declared.is_ok())
    log()->warn("first declaration failed (retrying every update_period): {}",
                declared.to_string());
  s.last_stats_at = SteadyClock::now();
  s.maintenance = std::thread([&s] { s.maintenance_loop(); });
  log()->info("serving {} expert(s) at {}", s.uids.size(), s.rpc->address());
  return Status::ok();
}

Status Server::Impl::declare_once() {
  const DhtTime expiration =
      SystemClock::instance().dht_now() +
      static_cast<DhtTime>(std::llround(effective_expiration(options) * 1000.0));
  const Deadline deadline =
      Deadline::after(std::min(seconds(options.update_period), Milliseconds(30000)));
  if (declare) return declare(uids, rpc->address(), expiration, deadline);
  if (dht) return dht::declare_experts(*dht, uids, rpc->address(), expiration, deadline);
  return unsupported_error(
      "this build has no DHT module and no declare hook was given: experts are not announced");
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
      Status s = checkpoint_all();
      if (requested || !s.is_ok()) {
        if (s.is_ok())
          log()->info("checkpoint written ({} expert(s)) on request", uids.size());
        else
          log()->error("checkpoint failed: {}", s.to_string());
      }
      lock.lock();
      if (now >= next_checkpoint) next_checkpoint = now + seconds(options.checkpoint_interval);
      continue;
    }
    if (now >= next_declare) {
      lock.unlock();
      Status s = declare_once();
      if (!s.is_ok()) log()->warn("declaring experts failed: {}", s.to_string());
      lock.lock();
      next_declare = now + seconds(options.update_period);
      continue;
    }
    if (now >= next_stats) {
      lock.unlock();
      report_stats();
      lock.lock();
      next_stats = now + seconds(options.stats_report_interval);
      continue;
    }
    cv.wait_until(lock, std::min({next_declare, next_checkpoint, next_stats}));
  }
}

void Server::Impl::report_stats() {
  const SteadyTime now = SteadyClock::now();
  const double elapsed = std::max(1e-9, std::chrono::duration<double>(now - last_stats_at).count());
  last_stats_at = now;
  uint64_t total_requests = 0;
  uint64_t total_samples = 0;
  for (const auto& [uid, e] : experts) {
    const TaskPoolStats f = e.forward->stats();
    const TaskPoolStats b = e.backward->stats();
    auto& [lf, lb] = last_stats[uid];
    const uint64_t req_f = f.tasks_submitted - lf.tasks_submitted,
                   req_b = b.tasks_submitted - lb.tasks_submitted;
    const uint64_t smp_f = f.samples - lf.samples, smp_b = b.samples - lb.samples;
    const uint64_t bat_f = f.batches - lf.batches, bat_b = b.batches - lb.batches;
    lf = f;
    lb = b;
    total_requests += req_f + req_b;
    total_samples += smp_f + smp_b;
    if (req_f + req_b == 0 && f.queued_tasks + b.queued_tasks == 0) continue;
    log()->info(
        "stats {}: forward {} req, {:.1f} samples/s, mean batch {:.1f}, queue {} | backward {} "
        "req, "
        "{:.1f} samples/s, mean batch {:.1f}, queue {}",
        uid, req_f, static_cast<double>(smp_f) / elapsed,
        bat_f ? static_cast<double>(smp_f) / static_cast<double>(bat_f) : 0.0, f.queued_tasks,
        req_b, static_cast<double>(smp_b) / elapsed,
        bat_b ? static_cast<double>(smp_b) / static_cast<double>(bat_b) : 0.0, b.queued_tasks);
  }
  log()->info("stats: {} expert(s), {} request(s), {:.1f} samples/s over the last {:.0f} s",
              experts.size(), total_requests, static_cast<double>(total_samples) / elapsed,
              elapsed);
}

Status Server::Impl::checkpoint_all() {
  if (options.checkpoint_dir.empty()) return Status::ok();
  std::lock_guard lock(checkpoint_mutex);
  Status first;
  for (const auto& [uid, e] : experts) {
    Status s = e.backend->save_checkpoint(checkpoint_path(options.checkpoint_dir, uid));
    if (!s.is_ok() && first.is_ok()) first = s;
  }
  return first;
}

Status Server::Impl::shutdown(Milliseconds grace) {
  std::lock_guard guard(shutdown_mutex);
  if (shutdown_result) return *shutdown_result;
  const SteadyTime start = SteadyClock::now();
  const Deadline deadline(start + grace);
  // Leave part of the grace period for the checkpoint.
  const Deadline drain_deadline(start + grace * 3 / 4);
  draining = true;  // new requests get Unavailable from now on
  {
    std::lock_guard lock(mutex);
    stop_maintenance = true;  // no more declarations: the records expire on their own
    shutdown_requested = true;
  }
  cv.notify_all();
  if (maintenance.joinable()) maintenance.join();
  Status drained = runtime ? runtime->drain(drain_deadline) : Status::ok();
  // Queued and in-flight batches are done; wait until their replies have left.
  while (rpc && rpc->in_flight() > 0 && !deadline.expired())
    std::this_thread::sleep_for(Milliseconds(2));
  Status saved = checkpoint_all();
  if (metrics_http) metrics_http->stop();  // its callbacks read the DHT node and the listener
  if (rpc) rpc->close();
  dht.reset();
  if (worker) worker->stop();
  const double took = std::chrono::duration<double>(SteadyClock::now() - start).count();
  if (!drained.is_ok()) log()->warn("drain: {}", drained.to_string());
  if (!saved.is_ok()) log()->error("final checkpoint failed: {}", saved.to_string());
  log()->info("server stopped in {:.2f} s{}", took,
              options.checkpoint_dir.empty() ? "" : ", experts checkpointed");
  shutdown_result = !saved.is_ok() ? saved : drained;
  return *shutdown_result;
}

Server::Impl::~Impl() {
  if (!shutdown_result) (void)shutdown(seconds(options.grace_period));
  if (runtime) runtime->stop();
}

// ---------------------------------------------------------------------------------------------------
std::string Server::address() const {
  return impl_->rpc->address();
}

std::string Server::dht_address() const {
  if (impl_->dht) return impl_->dht->address();
  return "";
}

const std::vector<std::string>& Server::expert_uids() const {
  return impl_->uids;
}

std::shared_ptr<ExpertBackend> Server::backend(const std::string& uid) const {
  auto it = impl_->experts.find(uid);
  return it == impl_->experts.end() ? nullptr : it->second.backend;
}

std::string Server::metrics_address() const {
  return impl_->metrics_http ? "http://" + impl_->metrics_http->address() + "/metrics" : "";
}

std::string Server::metrics_text() const {
  return impl_->metrics.render();
}

std::string Server::binding() const {
  return impl_->binding_text;
}

std::vector<ExpertStats> Server::stats() const {
  std::vector<ExpertStats> out;
  for (const auto& [uid, e] : impl_->experts)
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
  return impl_->checkpoint_all();
}

Status Server::shutdown(Milliseconds grace) {
  return impl_->shutdown(grace);
}

}  // namespace hivemind::runtime
