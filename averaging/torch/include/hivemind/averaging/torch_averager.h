// TorchAverager: the Averager over torch::Tensors, typically a module's dense parameters.
//
//   auto averager = TorchAverager::create(model->parameters(), options).value();
//   ...
//   RoundReport report = averager->step();  // the parameters now hold the group's mean
//
// The tensors must be defined, dense, contiguous, of a floating type (float32, float16, bfloat16)
// and all on one device; anything else is refused naming the tensor and what is wrong. A round
// writes the mean into the tensors' own memory (no copy of the model), outside autograd: step
// between optimizer steps, not while a backward pass still needs the parameters.
#pragma once

#include <future>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <hivemind/averaging/averager.h>

namespace hivemind::averaging {

// The TensorRefs of `tensors`, or the error naming the first tensor that cannot be averaged.
Result<std::vector<TensorRef>> tensor_refs(const std::vector<torch::Tensor>& tensors);

class TorchAverager {
 public:
  static Result<std::unique_ptr<TorchAverager>> create(std::vector<torch::Tensor> tensors,
                                                       AveragerOptions options);

  RoundReport step() { return averager_->step(); }
  std::future<RoundReport> step_async() { return averager_->step_async(); }
  std::string endpoint() const { return averager_->endpoint(); }
  void close() { averager_->close(); }
  const std::vector<torch::Tensor>& tensors() const { return tensors_; }

 private:
  TorchAverager(std::vector<torch::Tensor> tensors, std::unique_ptr<Averager> averager)
      : tensors_(std::move(tensors)), averager_(std::move(averager)) {}

  std::vector<torch::Tensor> tensors_;  // kept alive: the averager writes into their memory
  std::unique_ptr<Averager> averager_;
};

}  // namespace hivemind::averaging
