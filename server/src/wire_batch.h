// The codec side of the expert methods: request tensors stay in their wire encoding until the
// compute thread dequantizes a whole batch of them, straight into the batch tensor (on the GPU for
// GPU experts); each task's outputs are encoded back into reply buffers.
#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

#include <hivemind/common/result.h>
#include <hivemind/runtime/task_pool.h>
#include <hivemind/runtime/tensor_schema.h>
#include <hivemind/transport/buffer.h>
#include <hivemind/transport/message.h>

namespace hivemind::server {

// A request tensor's bytes as a uint8 CPU tensor that keeps the transport buffer alive: no copy.
torch::Tensor wrap_wire_bytes(const transport::Buffer& buffer);

// The TaskPool assembler of one method: decodes each task's still-encoded tensors (validated
// against `schemas`) into the rows of the batch on `device`. A task whose bytes do not decode, or
// that holds NaN/Inf with `detect_anomalies`, is rejected alone with an error naming `what`
// ("expert 'ffn.0.0' forward") and the tensor.
runtime::AssembleFn make_wire_assembler(std::vector<runtime::TensorSchema> schemas,
                                        torch::Device device, bool detect_anomalies,
                                        int cpu_threads, std::string what);

// Every output of one task, encoded with its schema's compression into fresh host buffers.
Result<transport::Message> encode_outputs(const std::vector<torch::Tensor>& outputs,
                                          const std::vector<runtime::TensorSchema>& schemas,
                                          int cpu_threads);

}  // namespace hivemind::server
