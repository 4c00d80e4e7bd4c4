#include <bit>

#include <fmt/format.h>

#include <hivemind/averaging/part_message.h>
#include <hivemind/common/byte_order.h>
#include <hivemind/quant/codec.h>

namespace hivemind::averaging {
namespace {

// Fixed header, little-endian (docs/wire-formats.md, "Averaging parts"):
//   0 u32 magic   4 u8 version   5 u8 kind   6 u8 codec   7 u8 block_log2
//   8 u64 key_hash   16 u64 group_hash   24 u64 round
//   32 u32 members   36 u32 sender   40 u32 part   44 u32 segment_count
//   48 u64 total_elements   56 u64 chunk_elements   64 u64 offset   72 u64 count   80 u64 reserved
// then segment_count x {u8 dtype, u64 elements}.

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

uint64_t fnv1a(uint64_t hash, std::span<const uint8_t> bytes) {
  for (uint8_t b : bytes) {
    hash ^= b;
    hash *= kFnvPrime;
  }
  return hash;
}

uint64_t fnv1a(uint64_t hash, std::string_view text) {
  return fnv1a(hash, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

uint64_t fnv1a_u64(uint64_t hash, uint64_t value) {
  uint8_t bytes[8];
  store_le<uint64_t>(bytes, value);
  return fnv1a(hash, bytes);
}

Status malformed(std::string what) {
  return protocol_error("averaging part: " + std::move(what));
}

}  // namespace

ElementRange part_range(uint64_t total, uint32_t members, uint32_t part) {
  if (members == 0 || part >= members) return {total, total};
  // floor(total * j / n), sizes that differ by at most one, computed as q*j + r*j/n so that
  // nothing overflows (r < n and j <= n, both below 2^32).
  const uint64_t q = total / members, r = total % members;
  auto at = [&](uint64_t j) { return q * j + r * j / members; };
  return {at(part), at(uint64_t{part} + 1)};
}

uint64_t key_fingerprint(std::string_view key) {
  return fnv1a(kFnvOffset, key);
}

uint64_t group_fingerprint(const Group& group) {
  // Each string is preceded by its length so that ("ab","c") and ("a","bc") differ.
  uint64_t h = fnv1a_u64(kFnvOffset, group.key.size());
  h = fnv1a(h, group.key);
  h = fnv1a_u64(h, group.round);
  h = fnv1a_u64(h, group.members.size());
  for (const auto& member : group.members) {
    h = fnv1a_u64(h, member.endpoint.size());
    h = fnv1a(h, member.endpoint);
  }
  return h;
}

std::vector<uint8_t> encode_part_header(const PartHeader& header) {
  std::vector<uint8_t> out;
  out.reserve(kPartFixedBytes + header.segments.size() * kPartSegmentBytes);
  ByteWriter w(out);
  w.u32(kPartMagic);
  w.u8(kPartVersion);
  w.u8(static_cast<uint8_t>(header.kind));
  w.u8(static_cast<uint8_t>(header.codec));
  w.u8(header.block_size == 0 ? 0 : static_cast<uint8_t>(std::countr_zero(header.block_size)));
  w.u64(header.key_hash);
  w.u64(header.group_hash);
  w.u64(header.round);
  w.u32(header.members);
  w.u32(header.sender);
  w.u32(header.part);
  w.u32(static_cast<uint32_t>(header.segments.size()));
  w.u64(header.total_elements);
  w.u64(header.chunk_elements);
  w.u64(header.offset);
  w.u64(header.count);
  w.u64(0);
  for (const auto& segment : header.segments) {
    w.u8(static_cast<uint8_t>(segment.dtype));
    w.u64(segment.elements);
  }
  return out;
}

Result<PartHeader> decode_part_header(std::span<const uint8_t> bytes, const PartLimits& limits) {
  if (bytes.size() < kPartFixedBytes)
    return malformed(
        fmt::format("{} bytes, shorter than the {}-byte header", bytes.size(), kPartFixedBytes));
  ByteReader r(bytes);
  uint32_t magic = 0, members = 0, sender = 0, part = 0, segment_count = 0;
  uint8_t version = 0, kind = 0, codec = 0, block_log2 = 0;
  uint64_t reserved = 0;
  PartHeader h;
  // The length was checked above, so none of these reads can fail.
  (void)r.u32(magic);
  (void)r.u8(version);
  (void)r.u8(kind);
  (void)r.u8(codec);
  (void)r.u8(block_log2);
  (void)r.u64(h.key_hash);
  (void)r.u64(h.group_hash);
  (void)r.u64(h.round);
  (void)r.u32(members);
  (void)r.u32(sender);
  (void)r.u32(part);
  (void)r.u32(segment_count);
  (void)r.u64(h.total_elements);
  (void)r.u64(h.chunk_elements);
  (void)r.u64(h.offset);
  (void)r.u64(h.count);
  (void)r.u64(reserved);

  if (magic != kPartMagic) return malformed(fmt::format("bad magic {:#010x}", magic));
  if (version != kPartVersion)
    return malformed(
        fmt::format("unsupported version {} (this build speaks {})", version, kPartVersion));
  if (kind != static_cast<uint8_t>(PartKind::kContribution) &&
      kind != static_cast<uint8_t>(PartKind::kMean))
    return malformed(fmt::format("unknown kind {}", kind));
  h.kind = static_cast<PartKind>(kind);
  if (codec == static_cast<uint8_t>(quant::Scheme::kNone)) {
    if (block_log2 != 0) return malformed("a raw part carries block_log2 0");
  } else if (codec == static_cast<uint8_t>(quant::Scheme::kBlockAbsmaxU8)) {
    if (block_log2 < 6 || block_log2 > 12)
      return malformed(fmt::format("block_log2 {} outside [6, 12]", block_log2));
    h.block_size = uint32_t{1} << block_log2;
  } else {
    return malformed(fmt::format("codec {} is neither 0 (raw) nor 3 (block_absmax_u8)", codec));
  }
  h.codec = static_cast<quant::Scheme>(codec);
  if (reserved != 0) return malformed("reserved field is not zero");
  if (members == 0 || members > limits.max_members)
    return malformed(fmt::format("{} members (limit {})", members, limits.max_members));
  if (sender >= members || part >= members)
    return malformed(
        fmt::format("sender {} / part {} out of range for {} members", sender, part, members));
  h.members = members;
  h.sender = sender;
  h.part = part;
  if (segment_count == 0 || segment_count > limits.max_segments)
    return malformed(fmt::format("{} segments (limit {})", segment_count, limits.max_segments));
  const size_t expected_bytes = kPartFixedBytes + size_t{segment_count} * kPartSegmentBytes;
  if (bytes.size() != expected_bytes)
    return malformed(fmt::format("{} bytes, but {} segments make {}", bytes.size(), segment_count,
                                 expected_bytes));
  if (h.total_elements == 0 || h.total_elements > limits.max_total_elements)
    return malformed(fmt::format("total of {} elements (limit {})", h.total_elements,
                                 limits.max_total_elements));
  if (h.chunk_elements == 0 || h.chunk_elements > limits.max_chunk_elements)
    return malformed(fmt::format("chunk length of {} elements (limit {})", h.chunk_elements,
                                 limits.max_chunk_elements));
  const ElementRange range = part_range(h.total_elements, members, part);
  if (h.offset < range.begin || h.offset >= range.end ||
      (h.offset - range.begin) % h.chunk_elements != 0)
    return malformed(fmt::format("chunk offset {} is not a chunk boundary of part {} [{}, {})",
                                 h.offset, part, range.begin, range.end));
  const uint64_t expected_count = std::min(h.chunk_elements, range.end - h.offset);
  if (h.count != expected_count)
    return malformed(fmt::format("chunk at {} holds {} elements, the partition says {}", h.offset,
                                 h.count, expected_count));

  h.segments.reserve(segment_count);
  uint64_t sum = 0;
  for (uint32_t i = 0; i < segment_count; ++i) {
    uint8_t dtype = 0;
    PartSegment segment;
    (void)r.u8(dtype);
    (void)r.u64(segment.elements);
    if (dtype > quant::kMaxDTypeValue || !quant::is_floating(static_cast<quant::DType>(dtype)))
      return malformed(fmt::format("segment {}: dtype {} is not a floating type", i, dtype));
    segment.dtype = static_cast<quant::DType>(dtype);
    if (segment.elements == 0 || segment.elements > h.count - sum)
      return malformed(fmt::format("segment {}: {} elements do not fit the chunk's {}", i,
                                   segment.elements, h.count));
    sum += segment.elements;
    h.segments.push_back(segment);
  }
  if (sum != h.count)
    return malformed(fmt::format("segments hold {} elements, the chunk {}", sum, h.count));
  return h;
}

Result<std::vector<uint64_t>> part_payload_sizes(const PartHeader& header) {
  std::vector<uint64_t> sizes;
  sizes.reserve(header.segments.size());
  quant::EncodeOptions options;
  options.scheme = header.codec;
  options.block_size = header.block_size == 0 ? quant::kDefaultBlockSize : header.block_size;
  for (const auto& segment : header.segments) {
    if (header.codec == quant::Scheme::kNone) {
      sizes.push_back(segment.elements * quant::dtype_size(segment.dtype));
    } else {
      const int64_t shape[1] = {static_cast<int64_t>(segment.elements)};
      HIVEMIND_ASSIGN_OR_RETURN(size_t bytes, quant::encoded_size(segment.dtype, shape, options));
      sizes.push_back(bytes);
    }
  }
  return sizes;
}

}  // namespace hivemind::averaging
