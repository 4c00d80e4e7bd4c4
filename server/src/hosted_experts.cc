#include "hosted_experts.h"

#include <algorithm>
#include <cstdint>

#include <fmt/format.h>

#include <hivemind/common/logging.h>

#include "wire_batch.h"

namespace hivemind::server {

Result<std::unique_ptr<HostedExperts>> HostedExperts::create(const ServerOptions& o,
                                                             std::vector<std::string> uids,
                                                             const ThreadPlacement& placement,
                                                             MetricsRegistry& metrics) {
  std::unique_ptr<HostedExperts> hosted_experts(new HostedExperts());
  HostedExperts& self = *hosted_experts;
  self.checkpoint_dir_ = o.checkpoint_dir;
  self.uids_ = std::move(uids);
  self.runtime_ = std::make_unique<runtime::Runtime>(placement.runtime_options);

  runtime::OptimizerOptions opt;
  opt.name = o.optimizer;
  opt.lr = o.lr;
  opt.momentum = o.momentum;
  opt.beta1 = o.beta1;
  opt.beta2 = o.beta2;
  opt.eps = o.eps;
  opt.weight_decay = o.weight_decay;
  opt.clip_grad_norm = o.clip_grad_norm;
  if (o.scheduler == "linear" && (o.warmup_steps > 0 || o.total_steps > 0))
    opt.lr_schedule = runtime::linear_warmup_schedule(o.warmup_steps, o.total_steps);
  const runtime::ExpertConfig config = expert_config(o);
  const quant::Scheme compression = *runtime::parse_compression(o.compression);

  for (size_t i = 0; i < self.uids_.size(); ++i) {
    const std::string& uid = self.uids_[i];
    runtime::ExpertBackendOptions bo;
    bo.device = placement.device_of_expert(i);
    bo.optimizer = opt;
    bo.detect_anomalies = o.detect_anomalies;
    bo.compression = compression;
    HIVEMIND_ASSIGN_OR_RETURN(auto module, runtime::make_expert(config, uid, o.seed));
    HIVEMIND_ASSIGN_OR_RETURN(auto backend,
                              runtime::ExpertBackend::create(uid, std::move(module), bo));
    if (!o.checkpoint_dir.empty()) {
      const auto file = runtime::checkpoint_path(o.checkpoint_dir, uid);
      Status loaded = backend->load_checkpoint(file);
      if (loaded.is_ok()) {
        logger("server")->info("expert {}: resumed from {} ({} updates)", uid, file.string(),
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
    runtime::TaskPoolOptions pool;
    pool.max_batch_size = o.max_batch_size;
    pool.min_batch_size = o.min_batch_size;
    pool.fill_timeout = Milliseconds(o.batch_timeout_ms);
    pool.device = bo.device;
    hosted.forward_metrics = CallMetrics::create(metrics, uid, "forward");
    hosted.backward_metrics = CallMetrics::create(metrics, uid, "backward");
    // One task pool per method: batches assembled from the wire bytes, their sizes observed, then
    // the backend's forward or backward.
    auto add_method_pool = [&](bool backward) -> Result<std::shared_ptr<runtime::TaskPool>> {
      const char* method = backward ? "backward" : "forward";
      pool.name = fmt::format("{}/{}", uid, method);
      pool.assemble = make_wire_assembler(backward ? hosted.backward_in : hosted.forward_in,
                                          bo.device, o.detect_anomalies, o.intra_op_threads,
                                          fmt::format("expert '{}' {}", uid, method));
      runtime::ExpertBackend* raw = backend.get();
      Histogram* batches = (backward ? hosted.backward_metrics : hosted.forward_metrics).batch_size;
      return self.runtime_->add_pool(
          pool, [raw, batches, backward](std::vector<torch::Tensor> batch) {
            if (!batch.empty() && batch[0].dim() > 0)
              batches->observe(static_cast<double>(batch[0].size(0)));
            return backward ? raw->backward(std::move(batch)) : raw->forward(std::move(batch));
          });
    };
    HIVEMIND_ASSIGN_OR_RETURN(hosted.forward, add_method_pool(false));
    HIVEMIND_ASSIGN_OR_RETURN(hosted.backward, add_method_pool(true));
    self.experts_.emplace(uid, std::move(hosted));
  }
  const std::string shape =
      o.module_path.empty()
          ? fmt::format("hidden_dim {}", o.hidden_dim)
          : fmt::format("from {}{}", o.module_path, o.reinit ? " (weights from the seed)" : "");
  logger("server")->info(
      "{} {} expert(s), {}, on {}: {}{}", self.uids_.size(), o.expert_cls, shape, o.device,
      fmt::join(self.uids_.begin(), self.uids_.begin() + std::min<size_t>(self.uids_.size(), 8),
                " "),
      self.uids_.size() > 8 ? " ..." : "");
  return hosted_experts;
}

HostedExperts::~HostedExperts() {
  stop();
}

const HostedExpert* HostedExperts::find(const std::string& uid) const {
  auto it = experts_.find(uid);
  return it == experts_.end() ? nullptr : &it->second;
}

Status HostedExperts::checkpoint_all() {
  if (checkpoint_dir_.empty()) return Status::ok();
  std::lock_guard lock(checkpoint_mutex_);
  Status first;
  for (const auto& [uid, e] : experts_) {
    Status s = e.backend->save_checkpoint(runtime::checkpoint_path(checkpoint_dir_, uid));
    if (!s.is_ok() && first.is_ok()) first = s;
  }
  return first;
}

}  // namespace hivemind::server
