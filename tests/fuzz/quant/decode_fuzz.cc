// Fuzz target of the quant wire decoder: any bytes either parse into a header whose every offset
// lies inside the buffer, or are refused with an error; decoding a parsed buffer into every
// accepted dtype, or adding it to fp32 values, never reads or writes out of bounds (ASan) and never
// hangs.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include <hivemind/quant/codec.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hivemind::quant;
  std::span<const uint8_t> bytes(data, size);
  DecodeLimits limits;
  limits.max_numel = 1 << 20;  // keep the decoded output small under the fuzzer
  limits.max_bytes = 1 << 22;
  auto header = decode_header(bytes, limits);
  if (!header.is_ok()) return 0;
  const DecodedHeader& h = *header;
  if (h.total_bytes != size || h.payload_offset + h.payload_bytes != size ||
      h.scales_offset > h.payload_offset || h.zero_points_offset > h.payload_offset ||
      h.numel > limits.max_numel) {
    std::abort();  // a parsed header must describe exactly these bytes
  }
  for (DType out : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kInt64,
                    DType::kInt32, DType::kUInt8, DType::kBool}) {
    if (!decodable_as(h, out)) continue;
    std::vector<uint8_t> buffer(h.numel * dtype_size(out));
    if (!decode(h, bytes, out, buffer, CpuOptions{1}).is_ok())
      std::abort();  // a valid header always decodes
  }
  // The summing decoder an averaging owner runs on every contribution: from other values, divided.
  if (decodable_as(h, DType::kFloat32)) {
    std::vector<float> base(h.numel, 1.0f), out(h.numel);
    if (!decode_add(h, bytes, base, out, 3.0f, CpuOptions{1}).is_ok()) std::abort();
  }
  return 0;
}
