// ExpertCaller: the trainer's asynchronous view of "run this expert on these tensors".
//
// The MoE layers never talk to the network themselves: they ask an ExpertCaller, which the network
// layer implements over the expert RPC (transport + protocol + quant) and tests implement with
// local torch modules. Keeping the seam this small is what lets the layers be tested
// deterministically, with failures and hangs injected on demand.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <torch/types.h>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>

namespace hivemind::client {

// One live expert as the directory knows it: its uid ("expert.3.7") and where it is served.
struct ExpertRef {
  std::string uid;
  std::string endpoint;

  friend bool operator==(const ExpertRef&, const ExpertRef&) = default;
};

using ExpertCallback = std::function<void(Result<std::vector<torch::Tensor>>)>;

class ExpertCaller {
 public:
  virtual ~ExpertCaller() = default;

  // Runs the expert's forward on a batch (every input is batch-first, all with the same batch size)
  // and completes `done` exactly once with the outputs (batch-first, same batch size) or an error,
  // by `deadline` at the latest. `done` may run on any thread, including the calling one before
  // forward() returns; it must not block.
  virtual void forward(const ExpertRef& expert, std::vector<torch::Tensor> inputs,
                       Deadline deadline, ExpertCallback done) = 0;

  // Runs the expert's backward: given the forward inputs and the gradients of its outputs,
  // completes `done` exactly once with the gradients of its inputs (one per input, same shapes).
  // Same threading and deadline rules as forward().
  virtual void backward(const ExpertRef& expert, std::vector<torch::Tensor> inputs,
                        std::vector<torch::Tensor> grad_outputs, Deadline deadline,
                        ExpertCallback done) = 0;
};

}  // namespace hivemind::client
