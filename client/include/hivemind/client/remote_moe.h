// RemoteMixtureOfExperts: a LibTorch layer whose experts live on other machines (hivemind's
// RemoteMixtureOfExperts, same arguments and meaning).
//
//   forward(x):  one gating Linear(in_features, sum(grid_size)) scores every grid dimension; an
//                expert's score is the sum of its coordinates' scores; beam search finds each
//                sample's k_best live experts; each chosen expert gets ONE request carrying all the
//                samples routed to it (hivemind sends one request per sample and expert); the layer
//                waits until every sample has k_min answers, then at most timeout_after_k_min more,
//                never past forward_timeout; experts that failed or were late are masked and the
//                softmax runs over the survivors; the output is the weighted sum of their outputs.
//   backward:    each forward survivor gets one request with its samples' inputs and its output
//                gradients (already scaled by its weight); same waiting rules with backward_k_min
//                and backward_timeout; each input's gradient is the sum over the backward survivors
//                (failures add nothing). The gating network gets its gradient through the softmax
//                by ordinary autograd.
//
// Errors are exceptions (std::runtime_error, std::invalid_argument) that name the sample, the
// experts and the reasons. Every wait has a deadline.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <hivemind/client/beam_search.h>
#include <hivemind/client/expert_caller.h>
#include <hivemind/client/expert_directory.h>
#include <hivemind/common/clock.h>

namespace hivemind::client {

namespace detail {
class LearnedOutputSchemas;
}  // namespace detail

struct RemoteMixtureOfExpertsOptions {
  int64_t in_features = 0;  // the gating input size (the input's last dimension)
  std::vector<int64_t>
      grid_size;           // expert uids are uid_prefix + "i.j..." with 0 <= i < grid_size[0], ...
  std::string uid_prefix;  // "expert" or "expert." (the trailing '.' is added when missing)
  int64_t k_best = 1;      // average this many highest-scoring live experts per sample
  // Every sample needs at least this many expert outputs, else the forward throws (unless
  // allow_zero_outputs). Also what the wait counts before timeout_after_k_min starts.
  int64_t k_min = 1;
  // Hard cap on the forward wait (hivemind's None = unbounded has no equivalent: every wait has a
  // deadline).
  Milliseconds forward_timeout{60'000};
  // After every sample has k_min answers, wait at most this long for the others. nullopt: wait for
  // all of them up to forward_timeout (hivemind's None). The default is the seed era's 1 s.
  std::optional<Milliseconds> timeout_after_k_min = Milliseconds{1'000};
  // Each sample needs this many backward answers among its forward survivors (capped by their
  // number).
  int64_t backward_k_min = 1;
  Milliseconds backward_timeout{60'000};
  // NaN/Inf in the input or output gradients throw; NaN/Inf in an expert's answer mark that expert
  // failed.
  bool detect_anomalies = false;
  // Continue when a sample falls short of k_min / backward_k_min: it gets the weighted sum of the
  // experts that did answer, or zeros when none did (hivemind returns zeros only when no expert
  // answered at all).
  bool allow_zero_outputs = false;
  // Deadline for the whole beam search (all directory rounds of one forward).
  Milliseconds search_timeout{10'000};
  // Per-sample shape of the experts' one output (without the batch dimension). nullopt: the
  // number and shapes of their outputs are learned, as hivemind learns them, from the
  // `outputs_schema` of the first chosen expert whose `info` arrives during the first forward
  // (counted in its forward_timeout), then kept; where none can describe itself, that forward
  // assumes one output of the (first) input's shape and the next one asks again. Answers of
  // another shape count as failures.
  std::optional<std::vector<int64_t>> output_shape;
};

// The routing of the last forward, for logs, metrics and tests.
struct MoERouting {
  std::vector<std::vector<ChosenExpert>> chosen;  // per sample, best first
  torch::Tensor mask;                             // [batch, K] bool: which chosen experts answered
};

class RemoteMixtureOfExpertsImpl : public torch::nn::Module {
 public:
  // Throws std::invalid_argument on inconsistent options (k_min > k_best, empty grid, ...).
  RemoteMixtureOfExpertsImpl(RemoteMixtureOfExpertsOptions options,
                             std::shared_ptr<ExpertDirectory> directory,
                             std::shared_ptr<ExpertCaller> caller);

  // input: [batch, ..., in_features]; inputs with more than two dimensions are averaged over the
  // middle ones for gating (hivemind's rule). Returns [batch, *output_shape]. Experts of several
  // outputs need forward_outputs.
  torch::Tensor forward(const torch::Tensor& input);

  // Experts of several inputs (hivemind's forward(input, *args)): inputs[0] is gated as forward's
  // `input` and every chosen expert gets all of them, its samples' rows of each, in this order.
  // Each input is [batch, ...] with the first's batch size, on its device. A separate name, not an
  // overload of forward, so the module still fits torch::nn::Sequential and AnyModule.
  torch::Tensor forward_all(const std::vector<torch::Tensor>& inputs);

  // Experts of several outputs (a TorchScript expert returning a tuple): every output, in the
  // experts' order, each [batch, *its shape] and the same weighted average of the experts that
  // answered. Differentiable through each output.
  std::vector<torch::Tensor> forward_outputs(const std::vector<torch::Tensor>& inputs);

  const RemoteMixtureOfExpertsOptions& options() const { return options_; }
  // The per-sample shapes of the experts' outputs: {options().output_shape} when set, else what
  // the layer learned (nullopt until a forward learned them).
  std::optional<std::vector<std::vector<int64_t>>> output_shapes() const;
  const MoEBeamSearcher& beam_search() const { return searcher_; }
  const MoERouting& last_routing() const { return last_routing_; }

  torch::nn::Linear proj{nullptr};  // the gating network, hivemind's name

 private:
  RemoteMixtureOfExpertsOptions options_;
  MoEBeamSearcher searcher_;
  std::shared_ptr<ExpertCaller> caller_;
  std::shared_ptr<detail::LearnedOutputSchemas> learned_output_schemas_;
  MoERouting last_routing_;
};

TORCH_MODULE(RemoteMixtureOfExperts);

}  // namespace hivemind::client
