#include <hivemind/runtime/tensor_schema.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <torch/torch.h>

namespace hivemind::runtime {

namespace {

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool is_floating(torch::ScalarType t) {
  return t == torch::kFloat32 || t == torch::kFloat16 || t == torch::kBFloat16 || t == torch::kFloat64;
}

}  // namespace

std::string_view compression_name(WireCompression c) {
  switch (c) {
    case WireCompression::kNone: return "none";
    case WireCompression::kFloat16: return "float16";
    case WireCompression::kBFloat16: return "bfloat16";
    case WireCompression::kBlockAbsmaxU8: return "block_absmax_u8";
    case WireCompression::kPerTensorAbsmaxU8: return "per_tensor_absmax_u8";
    case WireCompression::kBlockAffineU8: return "block_affine_u8";
  }
  return "unknown";
}

std::optional<WireCompression> parse_compression(std::string_view name) {
  const std::string n = lower(name);
  if (n == "none") return WireCompression::kNone;
  if (n == "float16" || n == "fp16") return WireCompression::kFloat16;
  if (n == "bfloat16" || n == "bf16") return WireCompression::kBFloat16;
  if (n == "block_absmax_u8" || n == "blockwise_8bit") return WireCompression::kBlockAbsmaxU8;
  if (n == "per_tensor_absmax_u8" || n == "uniform_8bit") return WireCompression::kPerTensorAbsmaxU8;
  if (n == "block_affine_u8") return WireCompression::kBlockAffineU8;
  return std::nullopt;
}

std::string dtype_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return "float32";
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat64: return "float64";
    case torch::kInt64: return "int64";
    case torch::kInt32: return "int32";
    case torch::kUInt8: return "uint8";
    case torch::kInt8: return "int8";
    case torch::kBool: return "bool";
    default: return c10::toString(dtype);
  }
}

std::optional<torch::ScalarType> parse_dtype_name(std::string_view name) {
  for (torch::ScalarType t : {torch::kFloat32, torch::kFloat16, torch::kBFloat16, torch::kFloat64, torch::kInt64,
                              torch::kInt32, torch::kUInt8, torch::kInt8, torch::kBool}) {
    if (dtype_name(t) == lower(name)) return t;
  }
  return std::nullopt;
}

std::string shape_string(c10::IntArrayRef shape) {
  return fmt::format("[{}]", fmt::join(shape.begin(), shape.end(), ", "));
}

std::string TensorSchema::to_string() const {
  std::vector<std::string> dims;
  dims.reserve(shape.size() + 1);
  dims.emplace_back("batch");
  for (int64_t d : shape) dims.push_back(d == kAnyDim ? std::string("*") : std::to_string(d));
  return fmt::format("{}[{}] {}", dtype_name(dtype), fmt::join(dims, ", "), compression_name(compression));
}

Result<int64_t> check_tensors(const std::vector<torch::Tensor>& tensors,
                              const std::vector<TensorSchema>& schemas, std::string_view what,
                              bool detect_anomalies) {
  if (tensors.size() != schemas.size()) {
    return invalid_argument_error(fmt::format("{}: got {} tensor(s), expected {}", what, tensors.size(),
                                              schemas.size()));
  }
  int64_t batch = -1;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor& t = tensors[i];
    const TensorSchema& s = schemas[i];
    if (!t.defined()) return invalid_argument_error(fmt::format("{} {} is undefined", what, i));
    if (t.scalar_type() != s.dtype) {
      return invalid_argument_error(fmt::format("{} {} has dtype {}, expected {} (schema {})", what, i,
                                                dtype_name(t.scalar_type()), dtype_name(s.dtype),
                                                s.to_string()));
    }
    const bool rank_ok = t.dim() == static_cast<int64_t>(s.shape.size()) + 1;
    bool dims_ok = rank_ok;
    for (size_t d = 0; dims_ok && d < s.shape.size(); ++d) {
      dims_ok = s.shape[d] == kAnyDim || t.size(static_cast<int64_t>(d) + 1) == s.shape[d];
    }
    if (!dims_ok) {
      return invalid_argument_error(fmt::format("{} {} has shape {}, expected {} (batch first)", what, i,
                                                shape_string(t.sizes()), s.to_string()));
    }
    if (batch < 0) {
      batch = t.size(0);
    } else if (t.size(0) != batch) {
      return invalid_argument_error(fmt::format("{} {} has batch size {}, but tensor 0 has {}", what, i,
                                                t.size(0), batch));
    }
    if (detect_anomalies && is_floating(t.scalar_type()) && t.numel() > 0) {
      if (!torch::isfinite(t).all().item<bool>()) {
        const int64_t nan = torch::isnan(t).sum().item<int64_t>();
        const int64_t inf = torch::isinf(t).sum().item<int64_t>();
        return invalid_argument_error(fmt::format(
            "{} {} contains {} NaN and {} Inf value(s) (detect_anomalies is on)", what, i, nan, inf));
      }
    }
  }
  if (batch < 0) return invalid_argument_error(fmt::format("{}: no tensors", what));
  return batch;
}

}  // namespace hivemind::runtime
