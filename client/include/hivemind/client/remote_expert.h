// RemoteExpert: one remote expert as a LibTorch module with autograd (hivemind's RemoteExpert).
//
// forward(x) sends the whole batch in one request and returns the expert's output; backward sends
// the inputs with the output gradient and returns the inputs' gradients, so the expert's server
// applies its optimizer step. Failures and deadlines become exceptions that name the expert and the
// reason.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <hivemind/client/expert_caller.h>
#include <hivemind/common/clock.h>

namespace hivemind::client {

namespace detail {
class LearnedOutputSchemas;
}  // namespace detail

struct RemoteExpertOptions {
  Milliseconds forward_timeout{30'000};
  Milliseconds backward_timeout{30'000};
  // Per-sample shape of the expert's one output. nullopt: the number and shapes of its outputs
  // are learned from the `outputs_schema` of its `info` during the first forward (counted in its
  // forward_timeout), then kept; where the caller cannot describe the expert, one output of the
  // (first) input's shape (true of every block in the expert zoo).
  std::optional<std::vector<int64_t>> output_shape;
  bool detect_anomalies = false;  // NaN/Inf in the input or in the expert's answer raise
};

class RemoteExpertImpl : public torch::nn::Module {
 public:
  RemoteExpertImpl(ExpertAddress expert, std::shared_ptr<ExpertCaller> caller,
                   RemoteExpertOptions options = {});

  // input: [batch, ...]. Differentiable with respect to `input`.
  torch::Tensor forward(const torch::Tensor& input);

  // An expert of several inputs (a TorchScript expert's forward(x, mask), say): `inputs` in the
  // order its forward takes them, each [batch, ...] with one batch size, on one device. Returns
  // its one output, of the first input's dtype and device. Differentiable with respect to every
  // input. (A separate name, not an overload of forward: torch::nn::Sequential and AnyModule need
  // a module's forward to be unique.)
  torch::Tensor forward_all(const std::vector<torch::Tensor>& inputs);

  // An expert of several outputs (a TorchScript expert returning a tuple): every output, in its
  // order. Differentiable through each.
  std::vector<torch::Tensor> forward_outputs(const std::vector<torch::Tensor>& inputs);

  const ExpertAddress& expert() const { return expert_; }
  // The per-sample shapes of the expert's outputs: {the option} when set, else what the first
  // forward learned (nullopt until then).
  std::optional<std::vector<std::vector<int64_t>>> output_shapes() const;

 private:
  ExpertAddress expert_;
  std::shared_ptr<ExpertCaller> caller_;
  RemoteExpertOptions options_;
  std::shared_ptr<detail::LearnedOutputSchemas> learned_output_schemas_;
};

TORCH_MODULE(RemoteExpert);

}  // namespace hivemind::client
