// The wire codec: one tensor <-> one self-describing byte buffer (one transport tensor segment).
//
// Layout (little-endian; docs/wire-formats.md, "Quantized tensors"):
//   0  u32 magic "HMQ1"   4 u16 version (1)   6 u8 scheme   7 u8 src_dtype
//   8  u8 flags (bit 0 requires_grad; others 0)   9 u8 ndim
//   10 u8 block_log2 (6..12 blockwise, else 0)   11 u8 reserved (0)   12 u32 reserved (0)
//   16 u64 numel   24 u64 shape[ndim]
//   then, each section starting at a multiple of 16 from the buffer start:
//   f32 scales[n_blocks], u8 zero_points[n_blocks] (affine only), payload.
// n_blocks, the section offsets and the total size are derived from the header, never read from it;
// decode_header() checks every one of them against the buffer length and the limits before anything
// else touches the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <hivemind/common/result.h>
#include <hivemind/quant/types.h>

namespace hivemind::quant {

inline constexpr uint32_t kMagic = 0x31514d48u;  // "HMQ1" as bytes 48 4d 51 31
inline constexpr uint16_t kWireVersion = 1;
inline constexpr size_t kFixedHeaderBytes = 24;
inline constexpr uint32_t kMaxNdim = 32;  // hard cap, whatever the limits say
inline constexpr uint8_t kFlagRequiresGrad = 0x01;

// What a receiver accepts. Defaults suit activations and gradients of large experts.
struct DecodeLimits {
  uint32_t max_ndim = 8;
  uint64_t max_numel = uint64_t{1} << 32;
  uint64_t max_bytes = uint64_t{1} << 34;  // the whole encoded buffer
};

struct DecodedHeader {
  Scheme scheme = Scheme::kNone;
  DType src_dtype = DType::kFloat32;
  bool requires_grad = false;
  uint32_t block_size = 0;  // blockwise schemes; 0 otherwise
  std::vector<int64_t> shape;
  uint64_t numel = 0;
  uint64_t num_blocks = 0;  // scales (and zero-points) present
  uint64_t scales_offset = 0;
  uint64_t zero_points_offset = 0;  // affine only; equals payload_offset otherwise
  uint64_t payload_offset = 0;
  uint64_t payload_bytes = 0;
  uint64_t total_bytes = 0;
};

// Exact size of the encoding; an error when the view and options do not fit together.
Result<size_t> encoded_size(const TensorView& tensor, const EncodeOptions& options);
Result<size_t> encoded_size(DType dtype, std::span<const int64_t> shape,
                            const EncodeOptions& options);

// Writes the encoding into out[0, encoded_size) (out may be larger). Never modifies the input.
// The 8-bit schemes reject tensors holding Inf/NaN (numeric_spec.h, section 4).
Status encode(const TensorView& tensor, const EncodeOptions& options, std::span<uint8_t> out);
Result<std::vector<uint8_t>> encode_to_vector(const TensorView& tensor,
                                              const EncodeOptions& options);

// Encodes a contiguous tensor that occupies storage[0, numel * dtype_size) into the same storage,
// returning the encoded size; storage must hold max(tensor bytes, encoded size). The bytes equal
// encode()'s exactly (the input is consumed block by block before its memory is overwritten), so a
// server can encode an output whose memory it no longer needs without a second buffer.
Result<size_t> encode_in_place(std::span<uint8_t> storage, DType dtype,
                               std::span<const int64_t> shape, bool requires_grad,
                               const EncodeOptions& options);

// Parses and validates everything: magic, version, enum values, reserved bits, ndim and numel
// limits, shape product, section sizes against the buffer, scales finite and non-negative.
Result<DecodedHeader> decode_header(std::span<const uint8_t> encoded,
                                    const DecodeLimits& limits = {});

// For encodings whose bytes are elsewhere (device memory): the same checks on a host copy of the
// first header_extent() bytes (everything before the payload) of an encoding of total_bytes bytes.
// header_extent() needs only the fixed kFixedHeaderBytes and validates them.
Result<uint64_t> header_extent(std::span<const uint8_t> first_bytes, uint64_t total_bytes,
                               const DecodeLimits& limits = {});
Result<DecodedHeader> decode_header(std::span<const uint8_t> prefix, uint64_t total_bytes,
                                    const DecodeLimits& limits = {});

// The element type decode() accepts for this header: any float type when the source was a float,
// the source type itself otherwise.
bool decodable_as(const DecodedHeader& header, DType out_dtype);

// Dequantizes into out (exactly numel * dtype_size(out_dtype) bytes).
Status decode(std::span<const uint8_t> encoded, DType out_dtype, std::span<uint8_t> out,
              const DecodeLimits& limits = {}, const CpuOptions& cpu = {});
// Same with a header already returned by decode_header() for these bytes.
Status decode(const DecodedHeader& header, std::span<const uint8_t> encoded, DType out_dtype,
              std::span<uint8_t> out, const CpuOptions& cpu = {});

// Adds the decoded values to an fp32 accumulator (exactly numel floats): acc[i] += decoded[i],
// bit for bit what decode() into fp32 followed by an fp32 add gives, in one pass and without a
// scratch array. Refused (before touching acc) where decode() into kFloat32 would be: a source
// that is not a float, or bytes that do not match the header.
Status decode_accumulate(std::span<const uint8_t> encoded, std::span<float> acc,
                         const DecodeLimits& limits = {}, const CpuOptions& cpu = {});
// Same with a header already returned by decode_header() for these bytes.
Status decode_accumulate(const DecodedHeader& header, std::span<const uint8_t> encoded,
                         std::span<float> acc, const CpuOptions& cpu = {});

// out[i] = (base[i] + decoded[i]) / divisor: decode_accumulate from other values, with the sums
// divided in the same pass, bit for bit what decode() into fp32, an fp32 add and an fp32 division
// give (a divisor of 1 divides nothing). base may be out itself; otherwise the two must not
// overlap. This is how an averaging round forms a chunk's first sum from its own values and turns
// the last sum into the mean without passes of their own. Refused (before touching out) where
// decode_accumulate would be, when base and out differ in length, or for a divisor that is zero or
// not finite.
Status decode_add(std::span<const uint8_t> encoded, std::span<const float> base,
                  std::span<float> out, float divisor = 1.0f, const DecodeLimits& limits = {},
                  const CpuOptions& cpu = {});
// Same with a header already returned by decode_header() for these bytes.
Status decode_add(const DecodedHeader& header, std::span<const uint8_t> encoded,
                  std::span<const float> base, std::span<float> out, float divisor = 1.0f,
                  const CpuOptions& cpu = {});

// Writes just the header (kFixedHeaderBytes + 8 * ndim bytes, zero padding up to scales_offset).
// For encoders that produce scales and payload elsewhere (the CUDA path).
Status write_header(DType dtype, std::span<const int64_t> shape, bool requires_grad,
                    const EncodeOptions& options, std::span<uint8_t> out);
// The section offsets an encoding of this tensor will have (what decode_header would return).
Result<DecodedHeader> plan_encoding(DType dtype, std::span<const int64_t> shape, bool requires_grad,
                                    const EncodeOptions& options);

}  // namespace hivemind::quant
