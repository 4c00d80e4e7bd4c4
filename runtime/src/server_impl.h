// Private state of runtime::Server, shared by its lifecycle (server.cc) and RPC (server_rpc.cc)
// halves.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <hivemind/common/metrics.h>
#include <hivemind/common/metrics_http_server.h>
#include <hivemind/dht/dht.h>
#include <hivemind/protocol/expert_rpc.h>
#include <hivemind/runtime/pinning.h>
#include <hivemind/runtime/runtime.h>
#include <hivemind/runtime/server.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/worker.h>

#include "server_metrics.h"

namespace hivemind::runtime {

// One hosted expert: its backend, its two pools, and what "info" answers. Immutable after create(),
// so the I/O thread reads it without locks.
struct HostedExpert {
  std::shared_ptr<ExpertBackend> backend;
  std::shared_ptr<TaskPool> forward;
  std::shared_ptr<TaskPool> backward;
  protocol::ExpertInfo info;
  std::vector<TensorSchema> forward_in;   // = backend->input_schema()
  std::vector<TensorSchema> backward_in;  // inputs, then output gradients
  CallMetrics forward_metrics;
  CallMetrics backward_metrics;
};

struct Server::Impl {
  ServerOptions options;
  // Before everything its series and callbacks point into; the HTTP server stops in shutdown().
  MetricsRegistry metrics;
  std::unique_ptr<MetricsHttpServer> metrics_http;
  std::vector<std::string> uids;
  std::map<std::string, HostedExpert> experts;
  std::vector<ComputeDevice> devices;
  RuntimeOptions runtime_options;
  std::string binding_text;
  CpuList io_binding;

  std::unique_ptr<Runtime> runtime;
  std::shared_ptr<transport::Context> context;
  std::shared_ptr<transport::Worker> worker;
  std::shared_ptr<transport::rpc::Server> rpc;
  std::unique_ptr<dht::Dht> dht;
  DeclareFn declare;

  std::atomic<bool> draining{false};

  // Maintenance thread: declarations, periodic checkpoints, stats, and the requests below.
  std::mutex mutex;
  std::condition_variable cv;
  bool started = false;
  bool checkpoint_requested = false;
  bool shutdown_requested = false;
  bool stop_maintenance = false;
  std::thread maintenance;

  std::mutex shutdown_mutex;
  std::optional<Status> shutdown_result;
  std::mutex checkpoint_mutex;  // one checkpoint at a time (timer vs SIGUSR1 vs shutdown)

  // Stats between two reports.
  SteadyTime last_stats_at{};
  std::map<std::string, std::pair<TaskPoolStats, TaskPoolStats>> last_stats;

  ~Impl();
  Status place_threads();
  Status listen();
  Status choose_uids();
  Status build_experts();
  Status start_metrics();
  void register_handlers();
  Status declare_once();
  void maintenance_loop();
  void report_stats();
  Status checkpoint_all();
  Status shutdown(Milliseconds grace);

  // RPC (server_rpc.cc).
  void handle_info(transport::Message request, transport::rpc::Responder responder);
  void handle_call(bool backward, transport::Message request, transport::rpc::Responder responder);
};

// Builds the batch of a pool from still-encoded request tensors (server_rpc.cc).
AssembleFn make_wire_assembler(std::vector<TensorSchema> schemas, torch::Device device,
                               bool detect_anomalies, int cpu_threads, std::string what);

}  // namespace hivemind::runtime
