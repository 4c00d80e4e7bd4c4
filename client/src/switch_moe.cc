#include <limits>

#include <torch/nn.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/client/switch_moe.h>

#include "gating.h"
#include "learned_output_schemas.h"
#include "remote_call.h"

namespace hivemind::client {
namespace {

const std::string kLayer = "RemoteSwitchMixtureOfExperts";

const RemoteSwitchMixtureOfExpertsOptions& checked(
    const RemoteSwitchMixtureOfExpertsOptions& options) {
  detail::validate_options(options.moe, kLayer);
  auto fail = [](const std::string& what) { throw std::invalid_argument(kLayer + ": " + what); };
  if (!(options.utilization_alpha >= 0 && options.utilization_alpha <= 1))
    fail("utilization_alpha must be in [0, 1]");
  if (!(options.grid_dropout > 0 && options.grid_dropout <= 1))
    fail("grid_dropout must be in (0, 1]");
  if (!(options.jitter_eps >= 0 && options.jitter_eps < 1)) fail("jitter_eps must be in [0, 1)");
  return options;
}

}  // namespace

RemoteSwitchMixtureOfExpertsImpl::RemoteSwitchMixtureOfExpertsImpl(
    RemoteSwitchMixtureOfExpertsOptions options, std::shared_ptr<ExpertDirectory> directory,
    std::shared_ptr<ExpertCaller> caller)
    : options_(checked(options)),
      searcher_(std::move(directory), options_.moe.uid_prefix, options_.moe.grid_size),
      caller_(std::move(caller)),
      learned_output_schemas_(std::make_shared<detail::LearnedOutputSchemas>()) {
  if (!caller_) throw std::invalid_argument(kLayer + ": no ExpertCaller");
  int64_t total = 0;
  std::vector<torch::Tensor> initial;
  for (int64_t g : options_.moe.grid_size) {
    total += g;
    initial.push_back(torch::full({g}, 1.0 / static_cast<double>(g), torch::kFloat));
  }
  proj = register_module("proj", torch::nn::Linear(options_.moe.in_features, total));
  grid_utilization = register_buffer("grid_utilization", torch::cat(initial));
}

std::pair<torch::Tensor, torch::Tensor> RemoteSwitchMixtureOfExpertsImpl::forward(
    const torch::Tensor& input) {
  return forward_all({input});
}

std::optional<std::vector<std::vector<int64_t>>> RemoteSwitchMixtureOfExpertsImpl::output_shapes()
    const {
  if (options_.moe.output_shape)
    return std::vector<std::vector<int64_t>>{*options_.moe.output_shape};
  return learned_output_schemas_->known_shapes();
}

std::pair<torch::Tensor, torch::Tensor> RemoteSwitchMixtureOfExpertsImpl::forward_all(
    const std::vector<torch::Tensor>& inputs) {
  auto [outputs, balancing_loss] = forward_outputs(inputs);
  if (outputs.size() != 1) {
    throw std::invalid_argument(kLayer + ": the experts have " + std::to_string(outputs.size()) +
                                " outputs; call forward_outputs");
  }
  return {std::move(outputs.front()), std::move(balancing_loss)};
}

std::pair<std::vector<torch::Tensor>, torch::Tensor>
RemoteSwitchMixtureOfExpertsImpl::forward_outputs(const std::vector<torch::Tensor>& inputs) {
  if (inputs.empty()) throw std::invalid_argument(kLayer + ": no input");
  const torch::Tensor& input = inputs.front();
  const RemoteMixtureOfExpertsOptions& moe = options_.moe;
  if (moe.output_shape && torch::IntArrayRef(*moe.output_shape) != input.sizes().slice(1)) {
    throw std::invalid_argument(
        kLayer + ": the residual connection needs output_shape equal to the input's");
  }
  torch::Tensor gate_in = detail::gating_input(input, moe.in_features, kLayer);
  if (is_training() && options_.jitter_eps > 0) {
    // Multiplicative jitter for regularised routing; a new tensor, the caller's input stays as it
    // was.
    gate_in = gate_in *
              torch::empty_like(gate_in).uniform_(1 - options_.jitter_eps, 1 + options_.jitter_eps);
  }
  std::vector<torch::Tensor> grid = proj->forward(gate_in).split_with_sizes(moe.grid_size, -1);
  if (is_training() && options_.grid_dropout < 1) {
    for (torch::Tensor& scores : grid) {
      torch::Tensor keep = torch::rand({scores.size(-1)}, scores.options()) < options_.grid_dropout;
      if (!keep.any().item<bool>())
        continue;  // dropping every index would leave nothing to route to
      scores = torch::where(keep, scores,
                            torch::full_like(scores, -std::numeric_limits<double>::infinity()));
    }
  }
  std::vector<torch::Tensor> grid_softmax;
  for (const torch::Tensor& scores : grid)
    grid_softmax.push_back(torch::softmax(scores, -1));

  std::vector<std::vector<ChosenExpert>> chosen =
      detail::find_experts(searcher_, grid, moe.k_best, moe.search_timeout, kLayer);
  auto plan = std::make_shared<const detail::CallPlan>(detail::plan_calls(chosen));
  auto policy = detail::make_policy(moe, kLayer, learned_output_schemas_);
  detail::CallResult call = detail::call_experts(inputs, plan, caller_, policy);
  detail::require_floating_outputs(call, kLayer);
  if (call.outputs.front().sizes().slice(2) != input.sizes().slice(1)) {
    throw std::invalid_argument(
        kLayer + ": the residual connection adds the input to the experts' first output, whose " +
        "per-sample shape is " + detail::shape_string(call.outputs.front().sizes().slice(2)) +
        ", not the input's " + detail::shape_string(input.sizes().slice(1)));
  }
  const torch::Tensor& mask = call.mask;
  const detail::FlatRouting routing = detail::flatten_routing(chosen, grid.size(), input.device());

  if (is_training()) {
    // EMA of the fraction of answered routings that went to each index of each dimension.
    torch::NoGradGuard no_grad;
    const torch::Tensor answered = mask.index({routing.sample, routing.slot});
    std::vector<torch::Tensor> batch_utilization;
    for (size_t d = 0; d < grid.size(); ++d) {
      const torch::Tensor idx = routing.coords[d].index({answered});
      torch::Tensor counts = torch::zeros({moe.grid_size[d]}, grid_utilization.options());
      counts.index_add_(0, idx.to(counts.device()), torch::ones({idx.size(0)}, counts.options()));
      batch_utilization.push_back(counts / counts.sum().clamp_min(1e-12));  // F.normalize(p=1)
    }
    grid_utilization.mul_(options_.utilization_alpha)
        .add_(torch::cat(batch_utilization), 1 - options_.utilization_alpha);
  }

  // Expert probability = product of its per-dimension probabilities, zero where it did not answer.
  torch::Tensor probs =
      detail::expert_scores(grid_softmax, routing, detail::Combine::kProduct, 0.0);
  probs = torch::where(mask, probs, torch::zeros_like(probs));
  // Each output is the same weighted sum of the experts that answered; the first one is the
  // residual's.
  std::vector<torch::Tensor> results = detail::weighted_outputs(call, probs);
  results.front() = results.front() + input;

  const std::vector<torch::Tensor> utilization =
      grid_utilization.split_with_sizes(moe.grid_size, 0);
  std::vector<torch::Tensor> terms;
  for (size_t d = 0; d < grid.size(); ++d) {
    const double size = static_cast<double>(moe.grid_size[d]);
    terms.push_back(
        (grid_softmax[d].mean(0) * utilization[d].to(grid_softmax[d].options())).mean() *
        (size * size));
  }
  torch::Tensor balancing_loss = torch::stack(terms).sum();

  last_routing_ = {std::move(chosen), mask};
  return {std::move(results), balancing_loss};
}

}  // namespace hivemind::client
