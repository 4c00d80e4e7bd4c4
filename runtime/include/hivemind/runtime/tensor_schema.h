// What an expert accepts and returns, per tensor: dtype, shape without the batch dimension, and the
// compression the tensor travels with on the wire.
//
// Every tensor that reaches an expert is checked against its schema before it joins a batch, so one
// malformed request fails alone with a message naming the tensor, instead of failing a whole batch (or
// crashing inside LibTorch) later.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <torch/types.h>

#include <hivemind/common/result.h>

namespace hivemind::runtime {

// The wire compression of one tensor. Values equal quant::Scheme's wire values, so converting is a cast
// (the runtime keeps its own enum so the zoo and the backend need not link the codec).
enum class WireCompression : uint8_t {
  kNone = 0,
  kFloat16 = 1,
  kBFloat16 = 2,
  kBlockAbsmaxU8 = 3,
  kPerTensorAbsmaxU8 = 4,
  kBlockAffineU8 = 5,
};

// "none", "float16", "bfloat16", "block_absmax_u8", "per_tensor_absmax_u8", "block_affine_u8".
std::string_view compression_name(WireCompression c);
// Accepts the names above in any case, plus hivemind's names: NONE, FLOAT16, BLOCKWISE_8BIT
// (= block_absmax_u8) and UNIFORM_8BIT (= per_tensor_absmax_u8).
std::optional<WireCompression> parse_compression(std::string_view name);

// A dimension of kAnyDim in a schema shape matches any size (a sequence length, for instance).
inline constexpr int64_t kAnyDim = -1;

struct TensorSchema {
  torch::ScalarType dtype = torch::kFloat32;
  std::vector<int64_t> shape;  // without the batch dimension; kAnyDim entries match any size
  WireCompression compression = WireCompression::kNone;
  uint32_t block_size = 4096;  // for the blockwise schemes

  // "float32[*, 16] block_absmax_u8"
  std::string to_string() const;
  friend bool operator==(const TensorSchema&, const TensorSchema&) = default;
};

// Checks that `tensors` matches `schemas` one to one: count, dtype, rank, every non-batch dimension,
// and one batch size shared by all tensors (returned). `what` names the tensors in errors, e.g.
// "expert 'ffn.0.3' forward input". With `detect_anomalies`, floating tensors must also be finite.
// Errors are InvalidArgument and say what was expected.
Result<int64_t> check_tensors(const std::vector<torch::Tensor>& tensors,
                              const std::vector<TensorSchema>& schemas, std::string_view what,
                              bool detect_anomalies);

// "float32", "float16", "bfloat16", "int64", "bool", ... (numpy-style names, as in quant and hivemind).
std::string dtype_name(torch::ScalarType dtype);
// The inverse of dtype_name; nullopt for a name it does not know.
std::optional<torch::ScalarType> parse_dtype_name(std::string_view name);

// Convenience for shapes in messages: "[4, 16]".
std::string shape_string(c10::IntArrayRef shape);

}  // namespace hivemind::runtime
