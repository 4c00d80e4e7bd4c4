// Fuzz target of the averaging part decoder: any bytes either decode into a header that describes
// a chunk inside its part (segments summing to its count, payload sizes derivable) and re-encode
// to the same bytes, or are refused with an error. Run under small limits (so every limit check
// is reached) and the defaults.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include <hivemind/averaging/part_message.h>

namespace {

using namespace hivemind::averaging;

void check(std::span<const uint8_t> bytes, const PartLimits& limits) {
  auto decoded = decode_part_header(bytes, limits);
  if (!decoded.is_ok()) return;
  const PartHeader& h = *decoded;
  const ElementRange part = part_range(h.total_elements, h.members, h.part);
  if (h.offset < part.begin || h.offset + h.count > part.end || h.count == 0 ||
      h.count > h.chunk_elements || h.segments.empty() || h.segments.size() > limits.max_segments)
    std::abort();  // a decoded chunk lies inside its part
  uint64_t sum = 0;
  for (const auto& s : h.segments)
    sum += s.elements;
  if (sum != h.count) std::abort();
  auto sizes = part_payload_sizes(h);
  if (!sizes.is_ok() || sizes->size() != h.segments.size()) std::abort();
  const auto encoded = encode_part_header(h);
  if (!std::equal(encoded.begin(), encoded.end(), bytes.begin(), bytes.end())) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  PartLimits small;
  small.max_members = 8;
  small.max_segments = 4;
  small.max_total_elements = 1 << 20;
  small.max_chunk_elements = 1 << 12;
  check(bytes, small);
  check(bytes, PartLimits{});
  return 0;
}
