// RemoteSwitchMixtureOfExperts: Switch-Transformer routing over remote experts (hivemind's
// RemoteSwitchMixtureOfExperts, PR #228).
//
//   - multiplicative jitter U(1 - jitter_eps, 1 + jitter_eps) on the gating input;
//   - optional grid dropout: each index of each dimension is kept with probability grid_dropout
//     (its logit becomes -inf otherwise);
//   - per-dimension softmax; an expert's probability is the product over dimensions (not
//     renormalised);
//   - each output = sum over the answering experts of probability * that output; the input is
//     added to the first (the residual), which must have the input's shape; the outputs' number and
//     shapes are learned from the experts' descriptions, as RemoteMixtureOfExperts learns them;
//   - a load-balancing loss sum_d mean(softmax_d.mean(0) * utilization_d) * grid_size[d]^2, where
//     utilization is an EMA (utilization_alpha) of the fraction of answered routings per index.
// Defaults as hivemind: k_best 1, k_min 0, backward_k_min 0, allow_zero_outputs on.
// Departures, on purpose: jitter, grid dropout and the utilization update apply in training mode
// only (eval is deterministic); the input is never modified in place; each dimension's loss term
// uses that dimension's own utilization vector (hivemind zips the concatenated buffer and gets
// scalars); a dimension whose dropout dropped every index keeps them all (hivemind's softmax would
// be NaN).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <hivemind/client/remote_moe.h>

namespace hivemind::client {

namespace detail {
class LearnedOutputSchemas;
}  // namespace detail

struct RemoteSwitchMixtureOfExpertsOptions {
  // The MoE arguments; switch_defaults() gives hivemind's Switch defaults.
  RemoteMixtureOfExpertsOptions moe;
  double utilization_alpha = 0.9;
  double grid_dropout = 1.0;  // keep-probability of each grid index
  double jitter_eps = 1e-2;

  static RemoteSwitchMixtureOfExpertsOptions switch_defaults(RemoteMixtureOfExpertsOptions moe) {
    moe.k_best = 1;
    moe.k_min = 0;
    moe.backward_k_min = 0;
    moe.allow_zero_outputs = true;
    return {std::move(moe)};
  }
};

class RemoteSwitchMixtureOfExpertsImpl : public torch::nn::Module {
 public:
  RemoteSwitchMixtureOfExpertsImpl(RemoteSwitchMixtureOfExpertsOptions options,
                                   std::shared_ptr<ExpertDirectory> directory,
                                   std::shared_ptr<ExpertCaller> caller);

  // Returns {output (same shape as input), balancing_loss (scalar)}.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& input);

  // Experts of several inputs, as RemoteMixtureOfExpertsImpl::forward_all: inputs[0] is gated and
  // is the residual (the output has its shape); every chosen expert gets all of them. Experts of
  // several outputs need forward_outputs.
  std::pair<torch::Tensor, torch::Tensor> forward_all(const std::vector<torch::Tensor>& inputs);
  // Experts of several outputs (hivemind's switch packs them alike): {every output averaged with
  // the same probabilities, the input added to the first; balancing_loss}.
  std::pair<std::vector<torch::Tensor>, torch::Tensor> forward_outputs(
      const std::vector<torch::Tensor>& inputs);

  // The per-sample shapes of the experts' outputs: options().moe.output_shape, else what a forward
  // learned (nullopt until then).
  std::optional<std::vector<std::vector<int64_t>>> output_shapes() const;

  const RemoteSwitchMixtureOfExpertsOptions& options() const { return options_; }
  const MoEBeamSearcher& beam_search() const { return searcher_; }
  const MoERouting& last_routing() const { return last_routing_; }

  torch::nn::Linear proj{nullptr};
  torch::Tensor grid_utilization;  // buffer [sum(grid_size)], starts at 1/grid_size[d] per index

 private:
  RemoteSwitchMixtureOfExpertsOptions options_;
  MoEBeamSearcher searcher_;
  std::shared_ptr<ExpertCaller> caller_;
  std::shared_ptr<detail::LearnedOutputSchemas> learned_output_schemas_;
  MoERouting last_routing_;
};

TORCH_MODULE(RemoteSwitchMixtureOfExperts);

}  // namespace hivemind::client
