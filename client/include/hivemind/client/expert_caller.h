// ExpertCaller: the trainer's asynchronous view of "run this expert on these tensors".
//
// The MoE layers never talk to the network themselves: they ask an ExpertCaller, which the network
// layer implements over the expert RPC (transport + protocol + quant) and tests implement with
// local torch modules. Keeping the seam this small is what lets the layers be tested
// deterministically, with failures and hangs injected on demand.
#pragma once

#include <functional>
#include <vector>

#include <torch/types.h>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/common/status.h>
#include <hivemind/dht/expert_address.h>
#include <hivemind/protocol/expert_rpc.h>
#include <hivemind/quant/torch_codec.h>

namespace hivemind::client {

// The directory's answer for one live expert (its uid and its server's endpoint): the registry's
// type itself, so client and DHT share one name for it.
using dht::ExpertAddress;

using ExpertCallback = std::function<void(Result<std::vector<torch::Tensor>>)>;
using InfoCallback = std::function<void(Result<protocol::ExpertInfo>)>;

class ExpertCaller {
 public:
  virtual ~ExpertCaller() = default;

  // Runs the expert's forward on a batch (every input is batch-first, all with the same batch size)
  // and completes `done` exactly once with the outputs (batch-first, same batch size) or an error,
  // by `deadline` at the latest. `done` may run on any thread, including the calling one before
  // forward() returns; it must not block.
  virtual void forward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs,
                       Deadline deadline, ExpertCallback done) = 0;

  // Runs the expert's backward: given the forward inputs and the gradients of its outputs,
  // completes `done` exactly once with the gradients of its inputs (one per input, same shapes).
  // Same threading and deadline rules as forward().
  virtual void backward(const ExpertAddress& expert, std::vector<torch::Tensor> inputs,
                        std::vector<torch::Tensor> grad_outputs, Deadline deadline,
                        ExpertCallback done) = 0;

  // The expert's description (its reply to `info`: its inputs' and outputs' schemas). The layers
  // read their output's per-sample shape from it when their options name none, as hivemind's read
  // `outputs_schema`. Same threading and deadline rules as forward(). The default completes with
  // kUnsupported: a caller that cannot describe its experts, for which the layers assume that an
  // expert's output has the shape of its first input.
  virtual void info(const ExpertAddress& expert, Deadline deadline, InfoCallback done) {
    (void)deadline;
    done(unsupported_error("this ExpertCaller cannot describe expert " + expert.uid));
  }
};

// The dtype a trainer receives an expert's output in, the output being declared `declared` by the
// expert: a floating output comes in the dtype of the call's first floating input, so a float16
// trainer gets float16 answers from a float32 expert and the expert's precision stays the server's
// business; any other output (ids, a mask) in its own dtype. Without a floating input, the declared
// dtype.
inline c10::ScalarType answer_dtype(quant::DType declared, at::TensorList inputs) {
  if (quant::is_floating(declared)) {
    for (const torch::Tensor& input : inputs) {
      if (c10::isFloatingType(input.scalar_type())) return input.scalar_type();
    }
  }
  return quant::dtype_to_torch(declared);
}

}  // namespace hivemind::client
