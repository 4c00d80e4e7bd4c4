#include <stdexcept>

#include <torch/types.h>

#include <hivemind/client/remote_expert.h>

#include "remote_call.h"

namespace hivemind::client {

RemoteExpertImpl::RemoteExpertImpl(ExpertAddress expert, std::shared_ptr<ExpertCaller> caller,
                                   RemoteExpertOptions options)
    : expert_(std::move(expert)),
      caller_(std::move(caller)),
      options_(std::move(options)),
      learned_output_schemas_(std::make_shared<detail::LearnedOutputSchemas>()) {
  if (!caller_) throw std::invalid_argument("RemoteExpert: caller is null");
  if (expert_.uid.empty() || expert_.endpoint.empty()) {
    throw std::invalid_argument("RemoteExpert: the expert needs a uid and an endpoint");
  }
}

std::optional<std::vector<std::vector<int64_t>>> RemoteExpertImpl::output_shapes() const {
  if (options_.output_shape) return std::vector<std::vector<int64_t>>{*options_.output_shape};
  return learned_output_schemas_->known_shapes();
}

torch::Tensor RemoteExpertImpl::forward(const torch::Tensor& input) {
  return forward_all({input});
}

torch::Tensor RemoteExpertImpl::forward_all(const std::vector<torch::Tensor>& inputs) {
  std::vector<torch::Tensor> outputs = forward_outputs(inputs);
  if (outputs.size() != 1) {
    throw std::invalid_argument("RemoteExpert '" + expert_.uid + "' has " +
                                std::to_string(outputs.size()) + " outputs; call forward_outputs");
  }
  return std::move(outputs.front());
}

std::vector<torch::Tensor> RemoteExpertImpl::forward_outputs(
    const std::vector<torch::Tensor>& inputs) {
  if (inputs.empty()) throw std::invalid_argument("RemoteExpert '" + expert_.uid + "': no input");
  const torch::Tensor& first = inputs.front();
  if (!first.defined() || first.dim() < 1 || first.size(0) == 0) {
    throw std::invalid_argument("RemoteExpert '" + expert_.uid +
                                "': input needs a non-empty batch dimension");
  }
  // One expert chosen by every sample: the MoE fan-out with a single task, so RemoteExpert and the
  // MoE layers share one implementation of requests, deadlines, anomaly checks and autograd.
  std::vector<std::vector<ChosenExpert>> chosen(static_cast<size_t>(first.size(0)),
                                                {ChosenExpert{expert_, {}, 0.0}});
  auto plan = std::make_shared<const detail::CallPlan>(detail::plan_calls(chosen));
  auto policy = std::make_shared<detail::CallPolicy>();
  policy->layer = "RemoteExpert";
  policy->k_min = 1;
  policy->backward_k_min = 1;
  policy->forward_timeout = options_.forward_timeout;
  policy->backward_timeout = options_.backward_timeout;
  policy->timeout_after_k_min = std::nullopt;
  policy->detect_anomalies = options_.detect_anomalies;
  policy->allow_zero_outputs = false;
  policy->output_shape = options_.output_shape;
  policy->learned_output_schemas = learned_output_schemas_;
  detail::CallResult call = detail::call_experts(inputs, plan, caller_,
                                                 std::shared_ptr<const detail::CallPolicy>(policy));
  std::vector<torch::Tensor> outputs;
  outputs.reserve(call.outputs.size());
  for (const torch::Tensor& out : call.outputs)
    outputs.push_back(out.select(1, 0));
  return outputs;
}

}  // namespace hivemind::client
