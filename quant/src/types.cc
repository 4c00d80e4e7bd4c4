#include <array>
#include <utility>

#include <hivemind/quant/types.h>

namespace hivemind::quant {
namespace {

constexpr std::array<std::pair<Scheme, std::string_view>, 6> kSchemes{{
    {Scheme::kNone, "none"},
    {Scheme::kFloat16, "float16"},
    {Scheme::kBFloat16, "bfloat16"},
    {Scheme::kBlockAbsmaxU8, "block_absmax_u8"},
    {Scheme::kPerTensorAbsmaxU8, "per_tensor_absmax_u8"},
    {Scheme::kBlockAffineU8, "block_affine_u8"},
}};

constexpr std::array<std::pair<DType, std::string_view>, 7> kDTypes{{
    {DType::kFloat32, "float32"},
    {DType::kFloat16, "float16"},
    {DType::kBFloat16, "bfloat16"},
    {DType::kInt64, "int64"},
    {DType::kInt32, "int32"},
    {DType::kUInt8, "uint8"},
    {DType::kBool, "bool"},
}};

}  // namespace

std::string_view scheme_name(Scheme s) {
  for (const auto& [value, name] : kSchemes) {
    if (value == s) return name;
  }
  return "unknown";
}

std::string_view dtype_name(DType d) {
  for (const auto& [value, name] : kDTypes) {
    if (value == d) return name;
  }
  return "unknown";
}

std::optional<Scheme> parse_scheme(std::string_view text) {
  for (const auto& [value, name] : kSchemes) {
    if (name == text) return value;
  }
  return std::nullopt;
}

std::optional<DType> parse_dtype(std::string_view text) {
  for (const auto& [value, name] : kDTypes) {
    if (name == text) return value;
  }
  return std::nullopt;
}

}  // namespace hivemind::quant
