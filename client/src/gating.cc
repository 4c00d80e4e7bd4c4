#include "gating.h"

#include <stdexcept>

#include <torch/types.h>

namespace hivemind::client::detail {

void validate_options(const RemoteMixtureOfExpertsOptions& o, const std::string& layer) {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(layer + ": " + what); };
  if (o.in_features <= 0) fail("in_features must be positive");
  if (o.grid_size.empty()) fail("grid_size must have at least one dimension");
  for (int64_t g : o.grid_size) {
    if (g <= 0) fail("every grid_size entry must be positive");
  }
  if (o.k_best <= 0) fail("k_best must be positive");
  if (o.k_min < 0 || o.k_min > o.k_best) fail("k_min must be in [0, k_best]");
  if (o.backward_k_min < 0 || o.backward_k_min > o.k_best)
    fail("backward_k_min must be in [0, k_best]");
  if (o.forward_timeout.count() <= 0 || o.backward_timeout.count() <= 0 ||
      o.search_timeout.count() <= 0) {
    fail("forward_timeout, backward_timeout and search_timeout must be positive");
  }
  if (o.timeout_after_k_min && o.timeout_after_k_min->count() < 0)
    fail("timeout_after_k_min must be >= 0");
  if (o.output_shape) {
    for (int64_t d : *o.output_shape) {
      if (d < 0) fail("output_shape entries must be >= 0");
    }
  }
}

std::shared_ptr<const CallPolicy> make_policy(const RemoteMixtureOfExpertsOptions& o,
                                              std::string layer,
                                              std::shared_ptr<LearnedOutputSchemas> learned) {
  auto p = std::make_shared<CallPolicy>();
  p->layer = std::move(layer);
  p->k_min = o.k_min;
  p->backward_k_min = o.backward_k_min;
  p->forward_timeout = o.forward_timeout;
  p->backward_timeout = o.backward_timeout;
  p->timeout_after_k_min = o.timeout_after_k_min;
  p->detect_anomalies = o.detect_anomalies;
  p->allow_zero_outputs = o.allow_zero_outputs;
  p->output_shape = o.output_shape;
  p->learned_output_schemas = std::move(learned);
  return p;
}

torch::Tensor gating_input(const torch::Tensor& input, int64_t in_features,
                           const std::string& layer) {
  if (input.dim() < 2 || input.size(-1) != in_features) {
    throw std::invalid_argument(layer + ": expected an input of shape [batch, ..., " +
                                std::to_string(in_features) + "]");
  }
  if (!c10::isFloatingType(input.scalar_type())) {
    throw std::invalid_argument(layer + ": the first input is " +
                                std::string(c10::toString(input.scalar_type())) +
                                "; the gating function scores it, so it must be floating (ids or "
                                "masks go after it)");
  }
  if (input.dim() == 2) return input;
  std::vector<int64_t> middle;
  for (int64_t d = 1; d < input.dim() - 1; ++d)
    middle.push_back(d);
  return input.mean(middle);
}

void require_floating_outputs(const CallResult& call, const std::string& layer) {
  for (size_t j = 0; j < call.outputs.size(); ++j) {
    const c10::ScalarType dtype = call.outputs[j].scalar_type();
    if (!c10::isFloatingType(dtype)) {
      throw std::invalid_argument(
          layer + ": the experts' output " + std::to_string(j) + " is " + c10::toString(dtype) +
          "; a mixture averages its experts' outputs, so they must be floating (call an expert "
          "that returns ids or masks through RemoteExpert)");
    }
  }
}

std::vector<torch::Tensor> weighted_outputs(const CallResult& call, const torch::Tensor& weights) {
  std::vector<torch::Tensor> results;
  results.reserve(call.outputs.size());
  for (const torch::Tensor& outputs : call.outputs) {
    const int64_t batch = outputs.size(0);
    std::vector<int64_t> out_shape{batch};
    const auto per_sample = outputs.sizes().slice(2);
    out_shape.insert(out_shape.end(), per_sample.begin(), per_sample.end());
    const torch::Tensor flat =
        outputs.reshape({batch, outputs.size(1), c10::multiply_integers(per_sample)});
    results.push_back((weights.unsqueeze(-1).to(flat.scalar_type()) * flat).sum(1).view(out_shape));
  }
  return results;
}

FlatRouting flatten_routing(const std::vector<std::vector<ChosenExpert>>& chosen, size_t num_dims,
                            torch::Device device) {
  FlatRouting r;
  r.batch_size = static_cast<int64_t>(chosen.size());
  std::vector<int64_t> sample, slot;
  std::vector<std::vector<int64_t>> coords(num_dims);
  for (int64_t s = 0; s < r.batch_size; ++s) {
    r.max_experts = std::max<int64_t>(r.max_experts, static_cast<int64_t>(chosen[s].size()));
    for (size_t j = 0; j < chosen[s].size(); ++j) {
      sample.push_back(s);
      slot.push_back(static_cast<int64_t>(j));
      for (size_t d = 0; d < num_dims; ++d)
        coords[d].push_back(chosen[s][j].coords.at(d));
    }
  }
  auto to_tensor = [&](const std::vector<int64_t>& v) {
    return torch::tensor(v, torch::kLong).to(device);
  };
  r.sample = to_tensor(sample);
  r.slot = to_tensor(slot);
  for (const auto& c : coords)
    r.coords.push_back(to_tensor(c));
  return r;
}

torch::Tensor expert_scores(std::span<const torch::Tensor> per_dim, const FlatRouting& routing,
                            Combine combine, double fill) {
  const torch::TensorOptions options = per_dim.front().options();
  torch::Tensor flat;
  for (size_t d = 0; d < per_dim.size(); ++d) {
    torch::Tensor v = per_dim[d].index({routing.sample, routing.coords[d]});
    if (d == 0) {
      flat = v;
    } else {
      flat = combine == Combine::kSum ? flat + v : flat * v;
    }
  }
  return torch::full({routing.batch_size, routing.max_experts}, fill, options)
      .index_put({routing.sample, routing.slot}, flat);
}

std::vector<std::vector<ChosenExpert>> find_experts(const MoEBeamSearcher& searcher,
                                                    std::span<const torch::Tensor> grid_scores,
                                                    int64_t k_best, Milliseconds timeout,
                                                    const std::string& layer) {
  auto found = searcher.batch_find_best_experts(grid_scores, k_best, Deadline::after(timeout));
  if (!found.is_ok()) found.status().with_context(layer).throw_if_error();
  return std::move(found).value();
}

}  // namespace hivemind::client::detail
