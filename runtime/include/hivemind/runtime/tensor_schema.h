// What an expert accepts and returns, per tensor: dtype, shape without the batch dimension, and the
// compression the tensor travels with on the wire. The struct is the wire protocol's own
// (protocol::TensorSchema), so a backend's schema is exactly what "info" tells trainers.
//
// Every tensor that reaches an expert is checked against its schema before it joins a batch, so one
// malformed request fails alone with a message naming the tensor, instead of failing a whole batch
// (or crashing inside LibTorch) later.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include <hivemind/common/result.h>
#include <hivemind/protocol/expert_rpc.h>
#include <hivemind/quant/types.h>

namespace hivemind::runtime {

using TensorSchema = protocol::TensorSchema;

// quant's names ("none", "float16", "bfloat16", "block_absmax_u8", "per_tensor_absmax_u8",
// "block_affine_u8") in any case, plus hivemind's: NONE, FLOAT16, BLOCKWISE_8BIT (=
// block_absmax_u8), UNIFORM_8BIT (= per_tensor_absmax_u8).
std::optional<quant::Scheme> parse_compression(std::string_view name);

// The schema dtype as LibTorch's, and back (InvalidArgument for types the wire does not carry).
torch::ScalarType torch_dtype(quant::DType dtype);
Result<quant::DType> schema_dtype(torch::ScalarType dtype);

// "float32[batch, 16] block_absmax_u8"
std::string schema_string(const TensorSchema& schema);

// Checks that `tensors` matches `schemas` one to one: count, dtype, rank, every non-batch
// dimension, and one batch size shared by all tensors (returned). `what` names the tensors in
// errors, e.g. "expert 'ffn.0.3' forward input". With `detect_anomalies`, floating tensors must
// also be finite. Errors are InvalidArgument and say what was expected.
Result<int64_t> check_tensors(const std::vector<torch::Tensor>& tensors,
                              const std::vector<TensorSchema>& schemas, std::string_view what,
                              bool detect_anomalies);

// "float32", "float16", "bfloat16", "int64", "bool", ... (numpy-style names, as quant and hivemind
// use).
std::string dtype_name(torch::ScalarType dtype);

// Convenience for shapes in messages: "[4, 16]".
std::string shape_string(c10::IntArrayRef shape);

}  // namespace hivemind::runtime
