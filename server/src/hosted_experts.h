// The experts this server hosts: each one's backend (resumed from its checkpoint when there is
// one), its forward and backward task pools on the runtime's compute threads, what "info" answers,
// and its call metrics. The set is fixed at create(), so the I/O thread reads it without locks.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <hivemind/common/metrics.h>
#include <hivemind/common/result.h>
#include <hivemind/protocol/expert_rpc.h>
#include <hivemind/runtime/expert_backend.h>
#include <hivemind/runtime/runtime.h>
#include <hivemind/runtime/task_pool.h>
#include <hivemind/server/server_options.h>

#include "placement.h"
#include "server_metrics.h"

namespace hivemind::server {

struct HostedExpert {
  std::shared_ptr<runtime::ExpertBackend> backend;
  std::shared_ptr<runtime::TaskPool> forward;
  std::shared_ptr<runtime::TaskPool> backward;
  protocol::ExpertInfo info;
  std::vector<runtime::TensorSchema> forward_in;   // = backend->input_schema()
  std::vector<runtime::TensorSchema> backward_in;  // inputs, then output gradients
  CallMetrics forward_metrics;
  CallMetrics backward_metrics;
};

class HostedExperts {
 public:
  // Builds one expert per uid on the placement's devices (round-robin), loading
  // <checkpoint_dir>/<uid>.pt when present, and its two pools on a runtime placed as `placement`
  // says. The call metrics are created in `metrics`, which must outlive this object.
  static Result<std::unique_ptr<HostedExperts>> create(const ServerOptions& options,
                                                       std::vector<std::string> uids,
                                                       const ThreadPlacement& placement,
                                                       MetricsRegistry& metrics);
  ~HostedExperts();  // stop()

  const std::vector<std::string>& uids() const { return uids_; }
  const std::map<std::string, HostedExpert>& all() const { return experts_; }
  // nullptr for a uid this server does not host.
  const HostedExpert* find(const std::string& uid) const;

  // Starts the compute threads.
  Status start() { return runtime_->start(); }
  // Refuses new tasks and finishes the queued and running batches by `deadline` (Runtime::drain).
  Status drain(Deadline deadline) { return runtime_->drain(deadline); }
  // Stops the compute threads; what is still queued completes with Canceled. Idempotent.
  void stop() { runtime_->stop(); }

  // Saves every expert (atomic per-expert files); the first error is returned after all were
  // tried. Ok without a checkpoint_dir. One checkpoint at a time: the timer, SIGUSR1 and the
  // shutdown may ask at once.
  Status checkpoint_all();

 private:
  HostedExperts() = default;

  std::filesystem::path checkpoint_dir_;
  std::unique_ptr<runtime::Runtime> runtime_;
  std::vector<std::string> uids_;
  std::map<std::string, HostedExpert> experts_;
  std::mutex checkpoint_mutex_;
};

}  // namespace hivemind::server
