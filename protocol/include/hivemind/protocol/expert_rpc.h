// The expert RPC schema: what a trainer and an expert server say to each other.
//
//   info      request metadata = encode_call(uid), no tensors
//             response metadata = encode_expert_info(info), no tensors
//   forward   request metadata = encode_call(uid); tensors = one quant-encoded buffer per input
//             response tensors = one quant-encoded buffer per output
//   backward  request metadata = encode_call(uid); tensors = encoded inputs, then encoded
//             grad_outputs
//             response tensors = one encoded gradient per input
//
// Every tensor travels as one self-describing quant buffer (dtype, shape including the batch
// dimension, scheme; see docs/wire-formats.md), sent by the transport as one segment from its own
// memory. The schemas below say what the server expects and which compression each side uses for
// each tensor.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/result.h>
#include <hivemind/quant/types.h>

namespace hivemind::protocol {

inline constexpr std::string_view kInfoMethod = "info";
inline constexpr std::string_view kForwardMethod = "forward";
inline constexpr std::string_view kBackwardMethod = "backward";

// One tensor of an expert's signature, without the batch dimension.
struct TensorSchema {
  quant::DType dtype = quant::DType::kFloat32;
  std::vector<int64_t> shape;  // per-sample shape, e.g. {hidden_dim}
  quant::Scheme compression = quant::Scheme::kNone;
  uint32_t block_size = quant::kDefaultBlockSize;

  friend bool operator==(const TensorSchema&, const TensorSchema&) = default;
};

// What a server tells a trainer about one of its experts (the reply to "info").
struct ExpertInfo {
  std::string uid;
  std::string expert_cls;            // "ffn", "ffn_v08", "transformer", "nop", ...
  std::vector<TensorSchema> inputs;  // forward inputs (backward also takes one grad per output)
  std::vector<TensorSchema> outputs;
  uint32_t max_batch_size = 0;  // samples per request above this are refused

  friend bool operator==(const ExpertInfo&, const ExpertInfo&) = default;
};

// Bounds applied by the decoders before anything is allocated.
struct Limits {
  size_t max_uid_bytes = 256;
  size_t max_cls_bytes = 64;
  size_t max_tensors = 16;  // per signature
  size_t max_ndim = 8;
  int64_t max_dim = int64_t{1} << 31;
  // Elements of one sample of one tensor (the product of its schema's shape): a trainer sizes its
  // outputs from an expert's schema before any answer arrives, so a description must not make it
  // allocate more than an answer could carry (a frame holds at most 1 GiB: 2^28 float32 values).
  int64_t max_sample_elements = int64_t{1} << 28;
};

// Checks a uid against `limits` and the one uid grammar (common/expert_uid.h).
Status validate_uid(std::string_view uid, const Limits& limits = {});

std::vector<uint8_t> encode_call(std::string_view uid);
Result<std::string> decode_call(std::span<const uint8_t> bytes, const Limits& limits = {});

std::vector<uint8_t> encode_expert_info(const ExpertInfo& info);
Result<ExpertInfo> decode_expert_info(std::span<const uint8_t> bytes, const Limits& limits = {});

}  // namespace hivemind::protocol
