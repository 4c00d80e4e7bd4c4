// What both MoE layers share around the remote call: option checks, the gating input, and scoring
// the chosen experts from per-dimension gating tensors with autograd. Private to the module.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include <torch/types.h>

#include <hivemind/client/beam_search.h>
#include <hivemind/client/remote_moe.h>

#include "remote_call.h"

namespace hivemind::client::detail {

// Throws std::invalid_argument naming the layer and the bad option.
void validate_options(const RemoteMixtureOfExpertsOptions& options, const std::string& layer);

// `learned`: where the layer keeps the output shapes it learns from its experts' descriptions when
// options.output_shape is unset; null: one output of the input's shape.
std::shared_ptr<const CallPolicy> make_policy(const RemoteMixtureOfExpertsOptions& options,
                                              std::string layer,
                                              std::shared_ptr<LearnedOutputSchemas> learned);

// hivemind: inputs with more than two dimensions are averaged over the middle ones for gating.
torch::Tensor gating_input(const torch::Tensor& input, int64_t in_features,
                           const std::string& layer);

// A mixture averages its experts' outputs with the gating weights: throws std::invalid_argument
// naming the layer when one of `call`'s outputs is not floating (an expert that returns ids or a
// mask is called through RemoteExpert instead).
void require_floating_outputs(const CallResult& call, const std::string& layer);

// Each of `call`'s outputs [batch, K, ...] as its sum over the K slots weighted by `weights`
// [batch, K] (zero where an expert did not answer): [batch, ...], differentiable w.r.t. both.
std::vector<torch::Tensor> weighted_outputs(const CallResult& call, const torch::Tensor& weights);

// Every chosen (sample, slot) pair flattened, with its grid coordinates, as index tensors on
// `device`.
struct FlatRouting {
  int64_t batch_size = 0;
  int64_t max_experts = 0;
  torch::Tensor sample;               // [N] int64
  torch::Tensor slot;                 // [N] int64
  std::vector<torch::Tensor> coords;  // per dimension, [N] int64
};

FlatRouting flatten_routing(const std::vector<std::vector<ChosenExpert>>& chosen, size_t num_dims,
                            torch::Device device);

enum class Combine { kSum, kProduct };

// [batch, K]: for each chosen expert, its per-dimension values combined (sum of logits or product
// of probabilities); `fill` where a sample has fewer than K experts. Differentiable w.r.t. per_dim.
torch::Tensor expert_scores(std::span<const torch::Tensor> per_dim, const FlatRouting& routing,
                            Combine combine, double fill);

// Runs the beam search and throws on a directory failure.
std::vector<std::vector<ChosenExpert>> find_experts(const MoEBeamSearcher& searcher,
                                                    std::span<const torch::Tensor> grid_scores,
                                                    int64_t k_best, Milliseconds timeout,
                                                    const std::string& layer);

}  // namespace hivemind::client::detail
