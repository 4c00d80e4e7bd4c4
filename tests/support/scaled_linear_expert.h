// A tiny expert class that the runtime and server tests register from C++, as a user's program
// would: y = scale * Linear(h, h)(x), with `scale` a buffer (make_expert seeds the Linear and
// leaves buffers as the factory set them).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <hivemind/runtime/expert_registry.h>
#include <hivemind/runtime/experts.h>

namespace hivemind::test_experts {

inline constexpr const char* kScaledLinearClass = "test_scaled_linear";
inline constexpr double kScaledLinearScale = 0.5;

class ScaledLinear final : public runtime::ExpertModule {
 public:
  ScaledLinear(std::string cls, int64_t hidden_dim, double scale)
      : runtime::ExpertModule(std::move(cls)),
        hidden_dim_(hidden_dim),
        linear_(register_module("linear", torch::nn::Linear(hidden_dim, hidden_dim))),
        scale_(register_buffer("scale", torch::full({}, scale))) {}

  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& inputs) override {
    return {linear_(inputs[0]) * scale_};
  }
  std::vector<runtime::TensorSchema> input_schema() const override { return schema(); }
  std::vector<runtime::TensorSchema> output_schema() const override { return schema(); }

  const torch::nn::Linear& linear() const { return linear_; }
  const torch::Tensor& scale() const { return scale_; }

 private:
  std::vector<runtime::TensorSchema> schema() const {
    runtime::TensorSchema s;
    s.dtype = quant::DType::kFloat32;
    s.shape = {hidden_dim_};
    return {s};
  }

  int64_t hidden_dim_;
  torch::nn::Linear linear_;
  torch::Tensor scale_;
};

// Registers kScaledLinearClass once per process; later calls return the first call's outcome (a
// test binary may run several tests that need it in one process).
inline Status register_scaled_linear() {
  static const Status registered = runtime::register_expert_class(
      kScaledLinearClass,
      [](const runtime::ExpertConfig& c) -> std::shared_ptr<runtime::ExpertModule> {
        return std::make_shared<ScaledLinear>(kScaledLinearClass, c.hidden_dim, kScaledLinearScale);
      });
  return registered;
}

}  // namespace hivemind::test_experts
