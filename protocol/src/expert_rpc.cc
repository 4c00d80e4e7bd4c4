#include <fmt/format.h>

#include <hivemind/common/byte_order.h>
#include <hivemind/common/expert_uid.h>
#include <hivemind/protocol/expert_rpc.h>
#include <hivemind/quant/cpu_kernels.h>

namespace hivemind::protocol {
namespace {

// "HMX1" / "HMC1" as little-endian u32s; a version byte follows each so the layout can grow.
constexpr uint32_t kInfoMagic = 0x31584d48u;
constexpr uint32_t kCallMagic = 0x31434d48u;
constexpr uint8_t kVersion = 1;

Status truncated(std::string_view what) {
  return protocol_error(std::string(what) + " truncated");
}

// A string of these messages: a u16 length, then the bytes.
void write_string16(ByteWriter& out, std::string_view text) {
  out.u16(static_cast<uint16_t>(text.size()));
  out.raw(text);
}

// The length is checked against `max_bytes` and against what is left before the string is built.
Result<std::string> read_string16(ByteReader& in, size_t max_bytes, std::string_view what) {
  uint16_t length;
  if (!in.u16(length)) return truncated(std::string(what) + " length");
  if (length > max_bytes) {
    return too_large_error(std::string(what) + " of " + std::to_string(length) +
                           " bytes exceeds the limit of " + std::to_string(max_bytes));
  }
  std::string text;
  if (!in.string(length, text)) return truncated(what);
  return text;
}

void write_schema(ByteWriter& out, const TensorSchema& schema) {
  out.u8(static_cast<uint8_t>(schema.dtype));
  out.u8(static_cast<uint8_t>(schema.compression));
  out.u8(static_cast<uint8_t>(schema.shape.size()));
  out.u8(0);
  out.u32(schema.block_size);
  for (int64_t dim : schema.shape)
    out.i64(dim);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i == 0 ? "" : ", ") + std::to_string(shape[i]);
  return text + "]";
}

Result<TensorSchema> read_schema(ByteReader& in, const Limits& limits) {
  TensorSchema schema;
  uint8_t dtype, scheme, ndim, reserved;
  if (!in.u8(dtype) || !in.u8(scheme) || !in.u8(ndim) || !in.u8(reserved) ||
      !in.u32(schema.block_size)) {
    return truncated("tensor schema");
  }
  if (dtype > quant::kMaxDTypeValue)
    return protocol_error("unknown dtype " + std::to_string(dtype));
  if (scheme > quant::kMaxSchemeValue)
    return protocol_error("unknown scheme " + std::to_string(scheme));
  if (reserved != 0) return protocol_error("reserved schema byte is not zero");
  if (ndim > limits.max_ndim) {
    return too_large_error("schema of " + std::to_string(ndim) +
                           " dimensions exceeds the limit of " + std::to_string(limits.max_ndim));
  }
  schema.dtype = static_cast<quant::DType>(dtype);
  schema.compression = static_cast<quant::Scheme>(scheme);
  if (quant::is_blockwise(schema.compression)) {
    HIVEMIND_RETURN_IF_ERROR(quant::validate_block_size(schema.compression, schema.block_size));
  }
  if (in.remaining() < size_t{ndim} * sizeof(int64_t))
    return protocol_error("schema shape truncated");
  schema.shape.reserve(ndim);
  for (uint8_t d = 0; d < ndim; ++d) {
    int64_t dim;
    if (!in.i64(dim)) return truncated("schema shape");
    if (dim < 0 || dim > limits.max_dim) {
      return protocol_error("schema dimension " + std::to_string(dim) + " is out of range");
    }
    schema.shape.push_back(dim);
  }
  // Divided rather than multiplied first, so that the product never overflows.
  int64_t elements = 1;
  for (int64_t dim : schema.shape) {
    if (dim == 0) {
      elements = 0;
      break;
    }
    if (elements > limits.max_sample_elements / dim) {
      return too_large_error("schema of shape " + shape_text(schema.shape) +
                             " exceeds the limit of " + std::to_string(limits.max_sample_elements) +
                             " elements per sample");
    }
    elements *= dim;
  }
  return schema;
}

Result<std::vector<TensorSchema>> read_schemas(ByteReader& in, const Limits& limits,
                                               std::string_view what) {
  uint8_t count;
  if (!in.u8(count)) return truncated(std::string(what) + " count");
  if (count > limits.max_tensors) {
    return too_large_error(std::string(what) + ": " + std::to_string(count) +
                           " tensors exceed the limit of " + std::to_string(limits.max_tensors));
  }
  std::vector<TensorSchema> schemas;
  schemas.reserve(count);
  for (uint8_t i = 0; i < count; ++i) {
    HIVEMIND_ASSIGN_OR_RETURN(TensorSchema schema, read_schema(in, limits));
    schemas.push_back(std::move(schema));
  }
  return schemas;
}

Status read_header(ByteReader& in, uint32_t magic, std::string_view what) {
  uint32_t got_magic;
  if (!in.u32(got_magic)) return truncated(std::string(what) + " magic");
  if (got_magic != magic) return protocol_error(std::string(what) + ": bad magic");
  uint8_t version;
  if (!in.u8(version)) return truncated(std::string(what) + " version");
  if (version != kVersion) {
    return unsupported_error(std::string(what) + ": version " + std::to_string(version) +
                             " (this build speaks " + std::to_string(kVersion) + ")");
  }
  return Status::ok();
}

}  // namespace

Status validate_uid(std::string_view uid, const Limits& limits) {
  if (uid.empty()) return invalid_argument_error("expert uid is empty");
  if (uid.size() > limits.max_uid_bytes) {
    return invalid_argument_error("expert uid of " + std::to_string(uid.size()) +
                                  " bytes exceeds the limit of " +
                                  std::to_string(limits.max_uid_bytes));
  }
  if (!is_valid_uid(uid)) {
    // Escaped: the uid came from the network and goes into a log.
    return invalid_argument_error(
        fmt::format("expert uid {:?} is not of the form name.i.j... (e.g. expert.0.3)", uid));
  }
  return Status::ok();
}

std::vector<uint8_t> encode_call(std::string_view uid) {
  std::vector<uint8_t> bytes;
  ByteWriter out(bytes);
  out.u32(kCallMagic);
  out.u8(kVersion);
  write_string16(out, uid);
  return bytes;
}

Result<std::string> decode_call(std::span<const uint8_t> bytes, const Limits& limits) {
  ByteReader in(bytes);
  HIVEMIND_RETURN_IF_ERROR(read_header(in, kCallMagic, "expert call"));
  HIVEMIND_ASSIGN_OR_RETURN(std::string uid, read_string16(in, limits.max_uid_bytes, "expert uid"));
  if (in.remaining() != 0) return protocol_error("expert call has trailing bytes");
  HIVEMIND_RETURN_IF_ERROR(validate_uid(uid, limits));
  return uid;
}

std::vector<uint8_t> encode_expert_info(const ExpertInfo& info) {
  std::vector<uint8_t> bytes;
  ByteWriter out(bytes);
  out.u32(kInfoMagic);
  out.u8(kVersion);
  write_string16(out, info.uid);
  write_string16(out, info.expert_cls);
  out.u32(info.max_batch_size);
  for (const auto* schemas : {&info.inputs, &info.outputs}) {
    out.u8(static_cast<uint8_t>(schemas->size()));
    for (const auto& schema : *schemas)
      write_schema(out, schema);
  }
  return bytes;
}

Result<ExpertInfo> decode_expert_info(std::span<const uint8_t> bytes, const Limits& limits) {
  ByteReader in(bytes);
  HIVEMIND_RETURN_IF_ERROR(read_header(in, kInfoMagic, "expert info"));
  ExpertInfo info;
  HIVEMIND_ASSIGN_OR_RETURN(info.uid, read_string16(in, limits.max_uid_bytes, "expert uid"));
  HIVEMIND_RETURN_IF_ERROR(validate_uid(info.uid, limits));
  HIVEMIND_ASSIGN_OR_RETURN(info.expert_cls,
                            read_string16(in, limits.max_cls_bytes, "expert class"));
  if (!in.u32(info.max_batch_size)) return truncated("expert info batch size");
  HIVEMIND_ASSIGN_OR_RETURN(info.inputs, read_schemas(in, limits, "expert inputs"));
  HIVEMIND_ASSIGN_OR_RETURN(info.outputs, read_schemas(in, limits, "expert outputs"));
  if (in.remaining() != 0) return protocol_error("expert info has trailing bytes");
  return info;
}

}  // namespace hivemind::protocol
