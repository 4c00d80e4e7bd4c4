#include <limits>

#include <torch/nn.h>
#include <torch/types.h>

#include <hivemind/client/remote_moe.h>

#include "gating.h"
#include "remote_call.h"

namespace hivemind::client {
namespace {

const std::string kLayer = "RemoteMixtureOfExperts";

const RemoteMixtureOfExpertsOptions& checked(const RemoteMixtureOfExpertsOptions& options) {
  detail::validate_options(options, kLayer);
  return options;
}

}  // namespace

RemoteMixtureOfExpertsImpl::RemoteMixtureOfExpertsImpl(RemoteMixtureOfExpertsOptions options,
                                                       std::shared_ptr<ExpertDirectory> directory,
                                                       std::shared_ptr<ExpertCaller> caller)
    : options_(checked(options)),
      searcher_(std::move(directory), options_.uid_prefix, options_.grid_size),
      caller_(std::move(caller)),
      learned_output_schemas_(std::make_shared<detail::LearnedOutputSchemas>()) {
  if (!caller_) throw std::invalid_argument(kLayer + ": no ExpertCaller");
  int64_t total = 0;
  for (int64_t g : options_.grid_size)
    total += g;
  proj = register_module("proj", torch::nn::Linear(options_.in_features, total));
}

std::optional<std::vector<std::vector<int64_t>>> RemoteMixtureOfExpertsImpl::output_shapes() const {
  if (options_.output_shape) return std::vector<std::vector<int64_t>>{*options_.output_shape};
  return learned_output_schemas_->known_shapes();
}

torch::Tensor RemoteMixtureOfExpertsImpl::forward(const torch::Tensor& input) {
  return forward_all({input});
}

torch::Tensor RemoteMixtureOfExpertsImpl::forward_all(const std::vector<torch::Tensor>& inputs) {
  std::vector<torch::Tensor> outputs = forward_outputs(inputs);
  if (outputs.size() != 1) {
    throw std::invalid_argument(kLayer + ": the experts have " + std::to_string(outputs.size()) +
                                " outputs; call forward_outputs");
  }
  return std::move(outputs.front());
}

std::vector<torch::Tensor> RemoteMixtureOfExpertsImpl::forward_outputs(
    const std::vector<torch::Tensor>& inputs) {
  if (inputs.empty()) throw std::invalid_argument(kLayer + ": no input");
  const torch::Tensor& input = inputs.front();
  const torch::Tensor gate_in = detail::gating_input(input, options_.in_features, kLayer);
  const std::vector<torch::Tensor> grid =
      proj->forward(gate_in).split_with_sizes(options_.grid_size, -1);

  std::vector<std::vector<ChosenExpert>> chosen =
      detail::find_experts(searcher_, grid, options_.k_best, options_.search_timeout, kLayer);
  auto plan = std::make_shared<const detail::CallPlan>(detail::plan_calls(chosen));
  detail::CallResult call = detail::call_experts(
      inputs, plan, caller_, detail::make_policy(options_, kLayer, learned_output_schemas_));

  const detail::FlatRouting routing = detail::flatten_routing(chosen, grid.size(), input.device());
  const torch::Tensor logits = detail::expert_scores(grid, routing, detail::Combine::kSum,
                                                     -std::numeric_limits<double>::infinity());
  // Failed experts leave the softmax; a sample with no survivor gets zero weights rather than the
  // NaN of a softmax over nothing.
  const torch::Tensor& mask = call.mask;
  torch::Tensor masked = torch::where(
      mask, logits, torch::full_like(logits, -std::numeric_limits<double>::infinity()));
  masked = torch::where(mask.any(1, /*keepdim=*/true), masked, torch::zeros_like(masked));
  const torch::Tensor weights = torch::softmax(masked, 1) * mask.to(masked.scalar_type());

  detail::require_floating_outputs(call, kLayer);
  // Each output is the same weighted average of the experts that answered.
  std::vector<torch::Tensor> results = detail::weighted_outputs(call, weights);

  last_routing_ = {std::move(chosen), mask};
  return results;
}

}  // namespace hivemind::client
