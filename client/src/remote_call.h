// The fan-out at the heart of both MoE layers: send each expert its routed samples in one request,
// wait by the k_min rules, mask what failed, and do the same again in backward. Private to the
// module.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include <hivemind/client/beam_search.h>
#include <hivemind/client/expert_caller.h>
#include <hivemind/common/clock.h>

#include "learned_output_schemas.h"

namespace hivemind::client::detail {

struct CallPolicy {
  std::string layer;  // "RemoteMixtureOfExperts", for error messages
  int64_t k_min = 1;
  int64_t backward_k_min = 1;
  Milliseconds forward_timeout{0};
  Milliseconds backward_timeout{0};
  std::optional<Milliseconds> timeout_after_k_min;
  bool detect_anomalies = false;
  bool allow_zero_outputs = false;
  // The experts' one output's per-sample shape (a floating output). nullopt: their outputs'
  // shapes and dtypes as learned from their descriptions, where `learned_output_schemas` is set
  // and one of them describes itself, else one floating output of the first input's per-sample
  // shape.
  std::optional<std::vector<int64_t>> output_shape;
  std::shared_ptr<LearnedOutputSchemas> learned_output_schemas;  // the layer's, shared by its calls
};

// One request per expert: the batch rows routed to it and, for each row, the expert's slot among
// that sample's chosen experts.
struct ExpertTask {
  ExpertAddress expert;
  std::vector<int64_t> samples;
  std::vector<int64_t> slots;
};

struct CallPlan {
  int64_t batch_size = 0;
  int64_t max_experts = 0;                  // K: the widest sample's number of chosen experts
  std::vector<int64_t> experts_per_sample;  // candidates per sample
  std::vector<ExpertTask> tasks;            // in order of first appearance
};

CallPlan plan_calls(const std::vector<std::vector<ChosenExpert>>& chosen);

struct CallResult {
  // One per expert output, in the expert's order: [batch, K, *that output's per-sample shape],
  // zeros where an expert failed. On the first input's device, in answer_dtype's dtypes; integer
  // outputs have no gradient.
  std::vector<torch::Tensor> outputs;
  torch::Tensor mask;  // [batch, K] bool: true where an expert answered
};

// Calls the planned experts on `inputs` (the expert's inputs in order, each [batch, ...] with the
// routing's batch size, all on one device); the outputs' number and per-sample shapes follow
// CallPolicy::output_shape's rule. Differentiable with respect to every floating input through the
// experts' backward, which takes one gradient per output and answers one per input (zeros for ids
// and masks, which get none); an answer whose floating-ness is not the expected one is that
// expert's failure. Throws std::invalid_argument on inputs that do not fit the routing or experts
// that describe no output, and (std::runtime_error) by the k_min rules.
CallResult call_experts(const std::vector<torch::Tensor>& inputs,
                        std::shared_ptr<const CallPlan> plan, std::shared_ptr<ExpertCaller> caller,
                        std::shared_ptr<const CallPolicy> policy);

// "[4, 16]": how the layers' errors write a shape.
std::string shape_string(torch::IntArrayRef shape);

}  // namespace hivemind::client::detail
