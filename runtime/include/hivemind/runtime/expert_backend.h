// ExpertBackend: one hosted expert — its module, optimizer, schemas and checkpoint — and the two
// batch functions the runtime calls.
//
// hivemind semantics (H2.6 in docs/hivemind-reference.md): forward runs without autograd; backward
// is stateless on the server side, so it re-runs the forward on the inputs the trainer sends back,
// runs autograd with the received output gradients and applies exactly one optimizer step per
// backward batch (whatever the batch size), returning the gradients of the inputs (zeros where an
// input got none).
//
// Thread safety: forward, backward and the checkpoint functions may be called from different
// threads (compute thread vs a SIGUSR1 checkpoint); one mutex serialises them, uncontended on the
// data path.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <hivemind/common/result.h>
#include <hivemind/runtime/experts.h>
#include <hivemind/runtime/tensor_schema.h>

namespace hivemind::runtime {

struct OptimizerOptions {
  std::string name = "adam";  // "sgd", "adam", "adamw" or "none" (no parameter updates)
  double lr = 1e-3;
  double momentum = 0.0;  // sgd
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam, adamw
  double clip_grad_norm = 0.0;  // > 0: clip the global gradient norm to this before each step
  // Optional multiplier of lr per step (the step index starts at 0): lr_t = lr * lr_schedule(t).
  std::function<double(int64_t step)> lr_schedule;
};

// Linear warm-up to 1 over `warmup_steps`, then linear decay to 0 at `total_steps` (hivemind's
// server schedule, get_linear_schedule_with_warmup). total_steps <= warmup_steps: constant after
// warm-up.
std::function<double(int64_t)> linear_warmup_schedule(int64_t warmup_steps, int64_t total_steps);

struct ExpertBackendOptions {
  torch::Device device = torch::kCPU;
  OptimizerOptions optimizer;
  // Check incoming tensors (and produced outputs) for NaN/Inf; costs one pass over every tensor.
  bool detect_anomalies = false;
  // Wire compression of every floating-point input and output (non-float tensors travel
  // uncompressed).
  quant::Scheme compression = quant::Scheme::kNone;
  uint32_t block_size = 4096;
};

class ExpertBackend {
 public:
  // Moves `module` to options.device and builds its optimizer. InvalidArgument for an unknown
  // optimizer or bad hyper-parameters.
  static Result<std::shared_ptr<ExpertBackend>> create(std::string uid,
                                                       std::shared_ptr<ExpertModule> module,
                                                       ExpertBackendOptions options);

  const std::string& uid() const { return uid_; }
  const std::string& expert_cls() const { return module_->expert_cls(); }
  torch::Device device() const { return options_.device; }
  const ExpertBackendOptions& options() const { return options_; }

  // Per tensor: dtype, shape without batch, wire compression.
  const std::vector<TensorSchema>& input_schema() const { return inputs_; }
  const std::vector<TensorSchema>& output_schema() const { return outputs_; }
  // What backward receives: the inputs followed by the gradients of the outputs.
  std::vector<TensorSchema> backward_schema() const;

  // Schema (and, with detect_anomalies, NaN/Inf) checks of one request; returns its batch size.
  Result<int64_t> check_forward(const std::vector<torch::Tensor>& inputs) const;
  Result<int64_t> check_backward(const std::vector<torch::Tensor>& inputs_and_grads) const;

  // The batch functions (run on the device's compute thread). Inputs on another device are moved.
  Result<std::vector<torch::Tensor>> forward(std::vector<torch::Tensor> inputs);
  Result<std::vector<torch::Tensor>> backward(std::vector<torch::Tensor> inputs_and_grads);

  // Optimizer steps applied so far (restored from a checkpoint).
  int64_t update_count() const;
  // Copies of the parameters, in registration order (for tests and the client's reference check).
  std::vector<torch::Tensor> parameters() const;

  // Writes parameters, buffers, optimizer state and the step count to `file` atomically (a
  // temporary file in the same directory, fsync, rename), so a crash leaves the old checkpoint or
  // the new one.
  Status save_checkpoint(const std::filesystem::path& file) const;
  // Restores what save_checkpoint wrote. InvalidArgument when the file belongs to another expert
  // class or its tensors' shapes differ (e.g. another hidden_dim); NotFound when it does not exist.
  Status load_checkpoint(const std::filesystem::path& file);

 private:
  ExpertBackend(std::string uid, std::shared_ptr<ExpertModule> module,
                ExpertBackendOptions options);
  Status build_optimizer();
  Result<std::vector<torch::Tensor>> to_device(std::vector<torch::Tensor> tensors) const;

  const std::string uid_;
  const std::shared_ptr<ExpertModule> module_;
  const ExpertBackendOptions options_;
  std::vector<TensorSchema> inputs_;
  std::vector<TensorSchema> outputs_;
  mutable std::mutex mutex_;
  std::unique_ptr<torch::optim::Optimizer>
      optimizer_;  // null for "none" or a module without parameters
  int64_t update_count_ = 0;
};

// "<dir>/<uid>.pt": where a server keeps an expert's checkpoint.
std::filesystem::path checkpoint_path(const std::filesystem::path& dir, const std::string& uid);

}  // namespace hivemind::runtime
