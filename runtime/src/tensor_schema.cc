#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <torch/types.h>

#include <hivemind/runtime/tensor_schema.h>

namespace hivemind::runtime {

namespace {

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

std::optional<quant::Scheme> parse_compression(std::string_view name) {
  const std::string n = lower(name);
  if (auto scheme = quant::parse_scheme(n)) return scheme;
  if (n == "fp16") return quant::Scheme::kFloat16;
  if (n == "bf16") return quant::Scheme::kBFloat16;
  if (n == "blockwise_8bit") return quant::Scheme::kBlockAbsmaxU8;
  if (n == "uniform_8bit") return quant::Scheme::kPerTensorAbsmaxU8;
  return std::nullopt;
}

torch::ScalarType torch_dtype(quant::DType dtype) {
  switch (dtype) {
    case quant::DType::kFloat32:
      return torch::kFloat32;
    case quant::DType::kFloat16:
      return torch::kFloat16;
    case quant::DType::kBFloat16:
      return torch::kBFloat16;
    case quant::DType::kInt64:
      return torch::kInt64;
    case quant::DType::kInt32:
      return torch::kInt32;
    case quant::DType::kUInt8:
      return torch::kUInt8;
    case quant::DType::kBool:
      return torch::kBool;
  }
  return torch::kFloat32;
}

namespace {
std::optional<quant::DType> wire_dtype(torch::ScalarType dtype) {
  for (quant::DType d :
       {quant::DType::kFloat32, quant::DType::kFloat16, quant::DType::kBFloat16,
        quant::DType::kInt64, quant::DType::kInt32, quant::DType::kUInt8, quant::DType::kBool}) {
    if (torch_dtype(d) == dtype) return d;
  }
  return std::nullopt;
}
}  // namespace

Result<quant::DType> schema_dtype(torch::ScalarType dtype) {
  if (auto d = wire_dtype(dtype)) return *d;
  return invalid_argument_error(
      fmt::format("dtype {} cannot travel on the wire", dtype_name(dtype)));
}

std::string dtype_name(torch::ScalarType dtype) {
  if (auto wire = wire_dtype(dtype)) return std::string(quant::dtype_name(*wire));
  if (dtype == torch::kFloat64) return "float64";
  if (dtype == torch::kInt8) return "int8";
  return c10::toString(dtype);
}

std::string shape_string(c10::IntArrayRef shape) {
  return fmt::format("[{}]", fmt::join(shape.begin(), shape.end(), ", "));
}

std::string schema_string(const TensorSchema& schema) {
  return fmt::format("{}[batch{}{}] {}", quant::dtype_name(schema.dtype),
                     schema.shape.empty() ? "" : ", ", fmt::join(schema.shape, ", "),
                     quant::scheme_name(schema.compression));
}

Result<int64_t> check_tensors(const std::vector<torch::Tensor>& tensors,
                              const std::vector<TensorSchema>& schemas, std::string_view what,
                              bool detect_anomalies) {
  if (tensors.size() != schemas.size()) {
    return invalid_argument_error(
        fmt::format("{}: got {} tensor(s), expected {}", what, tensors.size(), schemas.size()));
  }
  int64_t batch = -1;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor& t = tensors[i];
    const TensorSchema& s = schemas[i];
    if (!t.defined()) return invalid_argument_error(fmt::format("{} {} is undefined", what, i));
    if (t.scalar_type() != torch_dtype(s.dtype)) {
      return invalid_argument_error(fmt::format("{} {} has dtype {}, expected {} (schema {})", what,
                                                i, dtype_name(t.scalar_type()),
                                                quant::dtype_name(s.dtype), schema_string(s)));
    }
    bool dims_ok = t.dim() == static_cast<int64_t>(s.shape.size()) + 1;
    for (size_t d = 0; dims_ok && d < s.shape.size(); ++d) {
      dims_ok = t.size(static_cast<int64_t>(d) + 1) == s.shape[d];
    }
    if (!dims_ok) {
      return invalid_argument_error(fmt::format("{} {} has shape {}, expected {} (batch first)",
                                                what, i, shape_string(t.sizes()),
                                                schema_string(s)));
    }
    if (batch < 0) {
      batch = t.size(0);
    } else if (t.size(0) != batch) {
      return invalid_argument_error(
          fmt::format("{} {} has batch size {}, but tensor 0 has {}", what, i, t.size(0), batch));
    }
    if (detect_anomalies && c10::isFloatingType(t.scalar_type()) && t.numel() > 0) {
      if (!torch::isfinite(t).all().item<bool>()) {
        const int64_t nan = torch::isnan(t).sum().item<int64_t>();
        const int64_t inf = torch::isinf(t).sum().item<int64_t>();
        return invalid_argument_error(
            fmt::format("{} {} contains {} NaN and {} Inf value(s) (detect_anomalies is on)", what,
                        i, nan, inf));
      }
    }
  }
  if (batch < 0) return invalid_argument_error(fmt::format("{}: no tensors", what));
  return batch;
}

}  // namespace hivemind::runtime
