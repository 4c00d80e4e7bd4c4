#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include <hivemind/common/byte_order.h>
#include <hivemind/quant/codec.h>
#include <hivemind/quant/cpu_kernels.h>
#include <hivemind/quant/numeric_spec.h>

#include "cpu_internal.h"

namespace hivemind::quant {
namespace {

// The header goes through load_le/store_le, but the scales and the payload are copied and
// converted in bulk as host-order floats and integers: on a big-endian host those sections would
// need a byte swap per element, which nothing here does. Refuse to build there rather than send
// wrong numbers.
static_assert(std::endian::native == std::endian::little,
              "the quantized-tensor sections are copied as host-order arrays; the wire is "
              "little-endian");

constexpr uint64_t align16(uint64_t v) {
  return (v + 15) & ~uint64_t{15};
}

// Bytes per payload element.
uint64_t payload_element_bytes(Scheme scheme, DType src) {
  switch (scheme) {
    case Scheme::kNone:
      return dtype_size(src);
    case Scheme::kFloat16:
    case Scheme::kBFloat16:
      return 2;
    default:
      return 1;
  }
}

Status check_scheme_dtype(Scheme scheme, DType dtype) {
  if (scheme != Scheme::kNone && !is_floating(dtype)) {
    return invalid_argument_error(fmt::format("quant: scheme {} needs a float tensor, got {}",
                                              scheme_name(scheme), dtype_name(dtype)));
  }
  return Status::ok();
}

// Section offsets from the derived quantities. Every sum is checked against overflow; callers bound
// numel and ndim first so none can overflow, but the checks stay as the last line of defence.
Status fill_layout(DecodedHeader& h, size_t ndim) {
  h.num_blocks = num_blocks(h.scheme, h.numel, h.block_size);
  const uint64_t shape_end = kFixedHeaderBytes + 8 * static_cast<uint64_t>(ndim);
  h.scales_offset = align16(shape_end);
  uint64_t scales_end = h.scales_offset + 4 * h.num_blocks;
  if (h.scheme == Scheme::kBlockAffineU8) {
    h.zero_points_offset = align16(scales_end);
    h.payload_offset = align16(h.zero_points_offset + h.num_blocks);
  } else {
    h.payload_offset = align16(scales_end);
    h.zero_points_offset = h.payload_offset;
  }
  uint64_t elem = payload_element_bytes(h.scheme, h.src_dtype);
  if (h.numel > (std::numeric_limits<uint64_t>::max() - h.payload_offset) / elem) {
    return too_large_error("quant: encoded size overflows");
  }
  h.payload_bytes = h.numel * elem;
  h.total_bytes = h.payload_offset + h.payload_bytes;
  return Status::ok();
}

uint8_t block_log2(const DecodedHeader& h) {
  return is_blockwise(h.scheme) ? static_cast<uint8_t>(std::countr_zero(h.block_size)) : 0;
}

void write_header_bytes(const DecodedHeader& h, uint8_t* out) {
  std::memset(out, 0, h.scales_offset);
  store_le<uint32_t>(out + 0, kMagic);
  store_le<uint16_t>(out + 4, kWireVersion);
  out[6] = static_cast<uint8_t>(h.scheme);
  out[7] = static_cast<uint8_t>(h.src_dtype);
  out[8] = h.requires_grad ? kFlagRequiresGrad : 0;
  out[9] = static_cast<uint8_t>(h.shape.size());
  out[10] = block_log2(h);
  store_le<uint64_t>(out + 16, h.numel);
  for (size_t i = 0; i < h.shape.size(); ++i)
    store_le<uint64_t>(out + 24 + 8 * i, static_cast<uint64_t>(h.shape[i]));
}

// Zero bytes between sections, so equal tensors always give equal bytes.
void zero_padding(const DecodedHeader& h, uint8_t* out) {
  uint64_t scales_end = h.scales_offset + 4 * h.num_blocks;
  if (h.scheme == Scheme::kBlockAffineU8) {
    std::memset(out + scales_end, 0, h.zero_points_offset - scales_end);
    uint64_t zp_end = h.zero_points_offset + h.num_blocks;
    std::memset(out + zp_end, 0, h.payload_offset - zp_end);
  } else {
    std::memset(out + scales_end, 0, h.payload_offset - scales_end);
  }
}

}  // namespace

Result<DecodedHeader> plan_encoding(DType dtype, std::span<const int64_t> shape, bool requires_grad,
                                    const EncodeOptions& options) {
  if (static_cast<uint8_t>(options.scheme) > kMaxSchemeValue) {
    return invalid_argument_error("quant: unknown scheme");
  }
  if (static_cast<uint8_t>(dtype) > kMaxDTypeValue)
    return invalid_argument_error("quant: unknown dtype");
  HIVEMIND_RETURN_IF_ERROR(check_scheme_dtype(options.scheme, dtype));
  HIVEMIND_RETURN_IF_ERROR(validate_block_size(options.scheme, options.block_size));
  if (shape.size() > kMaxNdim) {
    return invalid_argument_error(
        fmt::format("quant: {} dimensions, at most {}", shape.size(), kMaxNdim));
  }
  DecodedHeader h;
  h.scheme = options.scheme;
  h.src_dtype = dtype;
  h.requires_grad = requires_grad;
  h.block_size = is_blockwise(options.scheme) ? options.block_size : 0;
  h.shape.assign(shape.begin(), shape.end());
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) return invalid_argument_error(fmt::format("quant: negative dimension {}", d));
    if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / static_cast<uint64_t>(d)) {
      return too_large_error("quant: tensor element count overflows");
    }
    numel *= static_cast<uint64_t>(d);
  }
  h.numel = numel;
  HIVEMIND_RETURN_IF_ERROR(fill_layout(h, shape.size()));
  return h;
}

Result<size_t> encoded_size(DType dtype, std::span<const int64_t> shape,
                            const EncodeOptions& options) {
  HIVEMIND_ASSIGN_OR_RETURN(DecodedHeader h, plan_encoding(dtype, shape, false, options));
  return static_cast<size_t>(h.total_bytes);
}

Result<size_t> encoded_size(const TensorView& tensor, const EncodeOptions& options) {
  return encoded_size(tensor.dtype, tensor.shape, options);
}

Status write_header(DType dtype, std::span<const int64_t> shape, bool requires_grad,
                    const EncodeOptions& options, std::span<uint8_t> out) {
  HIVEMIND_ASSIGN_OR_RETURN(DecodedHeader h, plan_encoding(dtype, shape, requires_grad, options));
  if (out.size() < h.scales_offset) return invalid_argument_error("quant: header buffer too small");
  write_header_bytes(h, out.data());
  return Status::ok();
}

Status encode(const TensorView& tensor, const EncodeOptions& options, std::span<uint8_t> out) {
  HIVEMIND_ASSIGN_OR_RETURN(
      DecodedHeader h, plan_encoding(tensor.dtype, tensor.shape, tensor.requires_grad, options));
  if (out.size() < h.total_bytes) {
    return invalid_argument_error(fmt::format(
        "quant: output buffer holds {} bytes, the encoding needs {}", out.size(), h.total_bytes));
  }
  if (h.numel > 0 && tensor.data == nullptr)
    return invalid_argument_error("quant: null tensor data");
  uint8_t* o = out.data();
  write_header_bytes(h, o);
  zero_padding(h, o);
  uint8_t* payload = o + h.payload_offset;
  switch (h.scheme) {
    case Scheme::kNone:
      if (h.payload_bytes > 0) std::memcpy(payload, tensor.data, h.payload_bytes);
      return Status::ok();
    case Scheme::kFloat16:
      return convert_cpu(tensor.data, tensor.dtype, h.numel, payload, DType::kFloat16, true,
                         options.cpu);
    case Scheme::kBFloat16:
      return convert_cpu(tensor.data, tensor.dtype, h.numel, payload, DType::kBFloat16, false,
                         options.cpu);
    default: {
      // Scales go through a properly aligned float array view: scales_offset is 16-aligned relative
      // to the buffer, and memcpy-free writes need the buffer itself 4-aligned; fall back
      // otherwise.
      auto* scales_ptr = o + h.scales_offset;
      uint8_t* zps = h.scheme == Scheme::kBlockAffineU8 ? o + h.zero_points_offset : nullptr;
      if (reinterpret_cast<uintptr_t>(scales_ptr) % alignof(float) == 0) {
        return quantize_cpu(tensor.data, tensor.dtype, h.numel, h.scheme, options.block_size,
                            reinterpret_cast<float*>(scales_ptr), zps, payload, options.cpu);
      }
      std::vector<float> scales(h.num_blocks);
      Status st = quantize_cpu(tensor.data, tensor.dtype, h.numel, h.scheme, options.block_size,
                               scales.data(), zps, payload, options.cpu);
      std::memcpy(scales_ptr, scales.data(), 4 * h.num_blocks);
      return st;
    }
  }
}

Result<std::vector<uint8_t>> encode_to_vector(const TensorView& tensor,
                                              const EncodeOptions& options) {
  HIVEMIND_ASSIGN_OR_RETURN(size_t size, encoded_size(tensor, options));
  std::vector<uint8_t> out(size);
  HIVEMIND_RETURN_IF_ERROR(encode(tensor, options, out));
  return out;
}

Result<size_t> encode_in_place(std::span<uint8_t> storage, DType dtype,
                               std::span<const int64_t> shape, bool requires_grad,
                               const EncodeOptions& options) {
  HIVEMIND_ASSIGN_OR_RETURN(DecodedHeader h, plan_encoding(dtype, shape, requires_grad, options));
  const uint64_t es = dtype_size(dtype);
  const uint64_t n = h.numel;
  const uint64_t ob = payload_element_bytes(h.scheme, dtype);
  const uint64_t input_bytes = n * es;
  if (storage.size() < std::max(input_bytes, h.total_bytes)) {
    return invalid_argument_error(fmt::format("quant: in-place storage holds {} bytes, needs {}",
                                              storage.size(),
                                              std::max(input_bytes, h.total_bytes)));
  }
  uint8_t* base = storage.data();
  std::vector<float> scales(h.num_blocks);
  std::vector<uint8_t> zero_points(h.scheme == Scheme::kBlockAffineU8 ? h.num_blocks : 0);

  // Phase 1: the output of each unit lands at the start of that unit's own input bytes, which its
  // loop has consumed by then (loads run ahead of the stores that alias them).
  uint64_t unit = 4096;
  Status status = Status::ok();
  if (is_u8_scheme(h.scheme)) {
    unit = placement_unit(h.scheme, options.block_size);
    status = quantize_cpu_placed(base, dtype, n, h.scheme, options.block_size, scales.data(),
                                 zero_points.empty() ? nullptr : zero_points.data(), base,
                                 es * unit, options.cpu);
  } else if (h.scheme != Scheme::kNone) {
    // Conversions go through a unit-sized scratch buffer: the portable loops may not be ordered
    // loads-before-stores when float and half pointers alias.
    std::vector<uint8_t> scratch(unit * ob);
    for (uint64_t start = 0; start < n && status.is_ok(); start += unit) {
      uint64_t len = std::min(unit, n - start);
      DType out_dtype = h.scheme == Scheme::kFloat16 ? DType::kFloat16 : DType::kBFloat16;
      CpuOptions single{1};
      status = convert_cpu(base + start * es, dtype, len, scratch.data(), out_dtype,
                           h.scheme == Scheme::kFloat16, single);
      std::memcpy(base + start * es, scratch.data(), len * ob);
    }
  }
  // Phase 2: move every unit's output to its place in the payload.
  const uint64_t payload = h.payload_offset;
  if (ob == es) {
    if (n > 0) std::memmove(base + payload, base, n * ob);
  } else {
    const uint64_t units = (n + unit - 1) / unit;
    // Units below u0 would overwrite input of a later unit still to be moved: park them first.
    uint64_t per = (es - ob) * unit;
    uint64_t u0 = std::min(units, (payload + per - 1) / per);
    u0 = u0 > 0 ? u0 - 1 : 0;
    std::vector<uint8_t> parked(std::min(n, u0 * unit) * ob);
    if (!parked.empty()) {
      for (uint64_t u = 0; u < u0; ++u) {
        uint64_t len = std::min(unit, n - u * unit);
        std::memcpy(parked.data() + u * unit * ob, base + u * unit * es, len * ob);
      }
    }
    for (uint64_t u = u0; u < units; ++u) {
      uint64_t len = std::min(unit, n - u * unit);
      std::memmove(base + payload + u * unit * ob, base + u * unit * es, len * ob);
    }
    if (!parked.empty()) std::memcpy(base + payload, parked.data(), parked.size());
  }
  // Phase 3: header, scales, zero-points, padding: everything below payload, whose input is
  // consumed.
  write_header_bytes(h, base);
  if (!scales.empty()) std::memcpy(base + h.scales_offset, scales.data(), 4 * scales.size());
  if (!zero_points.empty())
    std::memcpy(base + h.zero_points_offset, zero_points.data(), zero_points.size());
  zero_padding(h, base);
  HIVEMIND_RETURN_IF_ERROR(status);
  return static_cast<size_t>(h.total_bytes);
}

namespace {

// Validates the fixed 24 bytes and fills what they say (no shape yet).
Status parse_fixed(const uint8_t* p, uint64_t total_bytes, const DecodeLimits& limits,
                   DecodedHeader& h, uint32_t& ndim) {
  if (total_bytes < kFixedHeaderBytes) {
    return protocol_error(fmt::format("quant: {} bytes, shorter than the {}-byte header",
                                      total_bytes, kFixedHeaderBytes));
  }
  if (load_le<uint32_t>(p) != kMagic)
    return protocol_error("quant: bad magic (not an HMQ1 tensor)");
  uint16_t version = load_le<uint16_t>(p + 4);
  if (version != kWireVersion)
    return protocol_error(fmt::format("quant: unsupported version {}", version));
  if (p[6] > kMaxSchemeValue) return protocol_error(fmt::format("quant: unknown scheme {}", p[6]));
  if (p[7] > kMaxDTypeValue) return protocol_error(fmt::format("quant: unknown dtype {}", p[7]));
  if ((p[8] & ~kFlagRequiresGrad) != 0) return protocol_error("quant: unknown flag bits");
  if (p[11] != 0 || load_le<uint32_t>(p + 12) != 0)
    return protocol_error("quant: reserved header bytes not zero");
  h.scheme = static_cast<Scheme>(p[6]);
  h.src_dtype = static_cast<DType>(p[7]);
  h.requires_grad = (p[8] & kFlagRequiresGrad) != 0;
  if (!check_scheme_dtype(h.scheme, h.src_dtype).is_ok()) {
    return protocol_error(fmt::format("quant: scheme {} cannot carry dtype {}",
                                      scheme_name(h.scheme), dtype_name(h.src_dtype)));
  }
  ndim = p[9];
  if (ndim > std::min(limits.max_ndim, kMaxNdim)) {
    return too_large_error(fmt::format("quant: {} dimensions exceed the limit {}", ndim,
                                       std::min(limits.max_ndim, kMaxNdim)));
  }
  const uint8_t log2 = p[10];
  if (is_blockwise(h.scheme)) {
    if (log2 < 6 || log2 > 12)
      return protocol_error(fmt::format("quant: block_log2 {} outside 6..12", log2));
    h.block_size = uint32_t{1} << log2;
  } else if (log2 != 0) {
    return protocol_error("quant: block_log2 set for a scheme without blocks");
  }
  h.numel = load_le<uint64_t>(p + 16);
  if (h.numel > limits.max_numel) {
    return too_large_error(
        fmt::format("quant: {} elements exceed the limit {}", h.numel, limits.max_numel));
  }
  HIVEMIND_RETURN_IF_ERROR(fill_layout(h, ndim));
  if (h.total_bytes > limits.max_bytes) {
    return too_large_error(fmt::format("quant: {} encoded bytes exceed the limit {}", h.total_bytes,
                                       limits.max_bytes));
  }
  if (h.total_bytes != total_bytes) {
    return protocol_error(
        fmt::format("quant: {} bytes, the header describes {}", total_bytes, h.total_bytes));
  }
  return Status::ok();
}

}  // namespace

Result<uint64_t> header_extent(std::span<const uint8_t> first_bytes, uint64_t total_bytes,
                               const DecodeLimits& limits) {
  if (first_bytes.size() < kFixedHeaderBytes)
    return protocol_error("quant: fewer bytes than the fixed header");
  DecodedHeader h;
  uint32_t ndim = 0;
  HIVEMIND_RETURN_IF_ERROR(parse_fixed(first_bytes.data(), total_bytes, limits, h, ndim));
  return h.payload_offset;
}

Result<DecodedHeader> decode_header(std::span<const uint8_t> prefix, uint64_t total_bytes,
                                    const DecodeLimits& limits) {
  const uint8_t* p = prefix.data();
  if (prefix.size() < kFixedHeaderBytes)
    return protocol_error("quant: fewer bytes than the fixed header");
  DecodedHeader h;
  uint32_t ndim = 0;
  HIVEMIND_RETURN_IF_ERROR(parse_fixed(p, total_bytes, limits, h, ndim));
  if (prefix.size() < h.payload_offset) {
    return invalid_argument_error(
        fmt::format("quant: {} header bytes given, the sections before the payload "
                    "take {}",
                    prefix.size(), h.payload_offset));
  }
  h.shape.resize(ndim);
  uint64_t product = 1;
  bool saturated = false;
  for (uint32_t i = 0; i < ndim; ++i) {
    uint64_t d = load_le<uint64_t>(p + kFixedHeaderBytes + 8 * i);
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return protocol_error("quant: dimension beyond int64");
    }
    h.shape[i] = static_cast<int64_t>(d);
    if (d != 0 && product > h.numel / d) saturated = true;  // the product already exceeds numel
    product = saturated ? product : product * d;
  }
  // A zero dimension makes the product 0 whatever the others say; anything else must match exactly.
  bool has_zero = std::find(h.shape.begin(), h.shape.end(), 0) != h.shape.end();
  if (has_zero ? h.numel != 0 : (saturated || product != h.numel)) {
    return protocol_error("quant: shape does not multiply to numel");
  }
  for (uint64_t b = 0; b < h.num_blocks; ++b) {
    uint32_t bits = load_le<uint32_t>(p + h.scales_offset + 4 * b);
    if (bits >= spec::kInfBits) {  // negative (sign bit) or non-finite
      return protocol_error(fmt::format("quant: scale {} is negative or not finite", b));
    }
  }
  return h;
}

Result<DecodedHeader> decode_header(std::span<const uint8_t> encoded, const DecodeLimits& limits) {
  return decode_header(encoded, encoded.size(), limits);
}

bool decodable_as(const DecodedHeader& header, DType out_dtype) {
  if (static_cast<uint8_t>(out_dtype) > kMaxDTypeValue) return false;
  if (is_floating(header.src_dtype)) return is_floating(out_dtype);
  return out_dtype == header.src_dtype;
}

Status decode(const DecodedHeader& h, std::span<const uint8_t> encoded, DType out_dtype,
              std::span<uint8_t> out, const CpuOptions& cpu) {
  if (!decodable_as(h, out_dtype)) {
    return invalid_argument_error(fmt::format("quant: a {} tensor cannot be decoded as {}",
                                              dtype_name(h.src_dtype), dtype_name(out_dtype)));
  }
  if (encoded.size() != h.total_bytes)
    return invalid_argument_error("quant: header does not match these bytes");
  if (out.size() != h.numel * dtype_size(out_dtype)) {
    return invalid_argument_error(fmt::format("quant: output holds {} bytes, the tensor needs {}",
                                              out.size(), h.numel * dtype_size(out_dtype)));
  }
  if (h.numel == 0) return Status::ok();
  const uint8_t* payload = encoded.data() + h.payload_offset;
  switch (h.scheme) {
    case Scheme::kNone:
      if (out_dtype == h.src_dtype) {
        std::memcpy(out.data(), payload, h.payload_bytes);
        return Status::ok();
      }
      return convert_cpu(payload, h.src_dtype, h.numel, out.data(), out_dtype, false, cpu);
    case Scheme::kFloat16:
      return convert_cpu(payload, DType::kFloat16, h.numel, out.data(), out_dtype, false, cpu);
    case Scheme::kBFloat16:
      return convert_cpu(payload, DType::kBFloat16, h.numel, out.data(), out_dtype, false, cpu);
    default: {
      const uint8_t* zps =
          h.scheme == Scheme::kBlockAffineU8 ? encoded.data() + h.zero_points_offset : nullptr;
      const uint8_t* scales_ptr = encoded.data() + h.scales_offset;
      if (reinterpret_cast<uintptr_t>(scales_ptr) % alignof(float) == 0) {
        return dequantize_cpu(payload, reinterpret_cast<const float*>(scales_ptr), zps, h.numel,
                              h.scheme, h.block_size, out.data(), out_dtype, cpu);
      }
      std::vector<float> scales(h.num_blocks);
      std::memcpy(scales.data(), scales_ptr, 4 * h.num_blocks);
      return dequantize_cpu(payload, scales.data(), zps, h.numel, h.scheme, h.block_size,
                            out.data(), out_dtype, cpu);
    }
  }
}

Status decode(std::span<const uint8_t> encoded, DType out_dtype, std::span<uint8_t> out,
              const DecodeLimits& limits, const CpuOptions& cpu) {
  HIVEMIND_ASSIGN_OR_RETURN(DecodedHeader h, decode_header(encoded, limits));
  return decode(h, encoded, out_dtype, out, cpu);
}

namespace {

// The passthrough schemes' payload widened, added and divided (rare on the summing path: the
// transport backend sums u8 parts; these keep decode_add() total over what decode() accepts).
void widen_add(const uint8_t* payload, DType dtype, uint64_t n, const float* base, float* out,
               float divisor) {
  for (uint64_t i = 0; i < n; ++i) {
    float x;
    if (dtype == DType::kFloat32) {
      std::memcpy(&x, payload + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, payload + 2 * i, 2);
      x = dtype == DType::kBFloat16 ? spec::bf16_to_f32(h) : spec::f16_to_f32(h);
    }
    const float sum = base[i] + x;
    out[i] = divisor == 1.0f ? sum : sum / divisor;
  }
}

}  // namespace

Status decode_add(const DecodedHeader& h, std::span<const uint8_t> encoded,
                  std::span<const float> base, std::span<float> out, float divisor,
                  const CpuOptions& cpu) {
  if (!decodable_as(h, DType::kFloat32)) {
    return invalid_argument_error(fmt::format(
        "quant: a {} tensor cannot be added to a float32 accumulator", dtype_name(h.src_dtype)));
  }
  if (encoded.size() != h.total_bytes)
    return invalid_argument_error("quant: header does not match these bytes");
  if (out.size() != h.numel) {
    return invalid_argument_error(fmt::format(
        "quant: the accumulator holds {} elements, the tensor has {}", out.size(), h.numel));
  }
  if (base.size() != out.size()) {
    return invalid_argument_error(
        fmt::format("quant: {} values to add to, {} to write", base.size(), out.size()));
  }
  if (!std::isfinite(divisor) || divisor == 0.0f)
    return invalid_argument_error(fmt::format("quant: cannot divide the sums by {}", divisor));
  if (h.numel == 0) return Status::ok();
  const uint8_t* payload = encoded.data() + h.payload_offset;
  switch (h.scheme) {
    case Scheme::kNone:
      widen_add(payload, h.src_dtype, h.numel, base.data(), out.data(), divisor);
      return Status::ok();
    case Scheme::kFloat16:
      widen_add(payload, DType::kFloat16, h.numel, base.data(), out.data(), divisor);
      return Status::ok();
    case Scheme::kBFloat16:
      widen_add(payload, DType::kBFloat16, h.numel, base.data(), out.data(), divisor);
      return Status::ok();
    default: {
      const uint8_t* zps =
          h.scheme == Scheme::kBlockAffineU8 ? encoded.data() + h.zero_points_offset : nullptr;
      const uint8_t* scales_ptr = encoded.data() + h.scales_offset;
      if (reinterpret_cast<uintptr_t>(scales_ptr) % alignof(float) == 0) {
        return dequantize_add_cpu(payload, reinterpret_cast<const float*>(scales_ptr), zps, h.numel,
                                  h.scheme, h.block_size, base.data(), out.data(), divisor, cpu);
      }
      std::vector<float> scales(h.num_blocks);
      std::memcpy(scales.data(), scales_ptr, 4 * h.num_blocks);
      return dequantize_add_cpu(payload, scales.data(), zps, h.numel, h.scheme, h.block_size,
                                base.data(), out.data(), divisor, cpu);
    }
  }
}

Status decode_add(std::span<const uint8_t> encoded, std::span<const float> base,
                  std::span<float> out, float divisor, const DecodeLimits& limits,
                  const CpuOptions& cpu) {
  HIVEMIND_ASSIGN_OR_RETURN(DecodedHeader h, decode_header(encoded, limits));
  return decode_add(h, encoded, base, out, divisor, cpu);
}

Status decode_accumulate(const DecodedHeader& h, std::span<const uint8_t> encoded,
                         std::span<float> acc, const CpuOptions& cpu) {
  return decode_add(h, encoded, acc, acc, 1.0f, cpu);
}

Status decode_accumulate(std::span<const uint8_t> encoded, std::span<float> acc,
                         const DecodeLimits& limits, const CpuOptions& cpu) {
  return decode_add(encoded, acc, acc, 1.0f, limits, cpu);
}

}  // namespace hivemind::quant
