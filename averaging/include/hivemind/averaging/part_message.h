// Part messages: the metadata of the transport backend's reduce-scatter and all-gather.
//
// One rpc call on method "averaging.part" carries one chunk of one member's contribution to the
// part's owner (kind kContribution); the reply carries the group's mean of that chunk back (kind
// kMean). The metadata is this header; the payload is one transport tensor per segment (a segment
// is the piece of one of the member's tensors that the chunk covers), raw in the segment's dtype or
// one quant blockwise-uint8 encoding (quant/codec.h) each. Layout: docs/wire-formats.md,
// "Averaging parts".
//
// decode_part_header() is pure and validates every field (and the chunk's place in the partition)
// against PartLimits, so a receiver knows the exact payload sizes before it allocates anything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <hivemind/averaging/group.h>
#include <hivemind/common/result.h>
#include <hivemind/quant/types.h>

namespace hivemind::averaging {

inline constexpr std::string_view kPartMethod = "averaging.part";
inline constexpr uint32_t kPartMagic = 0x31414d48u;  // bytes "HMA1" on the wire
inline constexpr uint8_t kPartVersion = 1;
inline constexpr size_t kPartFixedBytes = 88;
inline constexpr size_t kPartSegmentBytes = 9;  // u8 dtype, u64 elements

enum class PartKind : uint8_t {
  kContribution = 1,  // a member's values for one chunk, sent to the part's owner
  kMean = 2,          // the owner's reply: the group's mean of that chunk
};

// What a receiver accepts; checked before anything is allocated.
struct PartLimits {
  uint32_t max_members = 1024;
  uint32_t max_segments = 1024;                     // tensors one chunk may span
  uint64_t max_total_elements = uint64_t{1} << 36;  // the whole averaged sequence (256 GiB fp32)
  uint64_t max_chunk_elements = uint64_t{1} << 26;  // one message's elements (256 MiB fp32)
};

struct PartSegment {
  quant::DType dtype = quant::DType::kFloat32;  // kFloat32, kFloat16 or kBFloat16
  uint64_t elements = 0;

  friend bool operator==(const PartSegment&, const PartSegment&) = default;
};

struct PartHeader {
  PartKind kind = PartKind::kContribution;
  quant::Scheme codec = quant::Scheme::kNone;  // kNone (raw) or kBlockAbsmaxU8
  uint32_t block_size = 0;                     // kBlockAbsmaxU8's block; 0 when raw
  uint64_t key_hash = 0;                       // fingerprint of the key (key_fingerprint)
  uint64_t group_hash =
      0;  // fingerprint of key, round and the members in order (group_fingerprint)
  uint64_t round = 0;
  uint32_t members = 0;
  uint32_t sender = 0;          // the contributing member's index (kMean: echoed)
  uint32_t part = 0;            // the part's index, i.e. its owner's index
  uint64_t total_elements = 0;  // elements of the whole sequence (every tensor, in order)
  uint64_t chunk_elements = 0;  // the agreed chunk length; a part is cut into chunks of it
  uint64_t offset = 0;          // the chunk's first element in the whole sequence
  uint64_t count = 0;           // the chunk's elements (= the sum of the segments')
  std::vector<PartSegment> segments;

  friend bool operator==(const PartHeader&, const PartHeader&) = default;
};

// [begin, end) of part `part` when `total` elements are split into `members` contiguous parts as
// evenly as possible (sizes differ by at most one; a part may be empty when total < members).
struct ElementRange {
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t size() const { return end - begin; }
};
ElementRange part_range(uint64_t total, uint32_t members, uint32_t part);

// 64-bit FNV-1a fingerprints members compute alike: of the key, and of key + round + the members'
// endpoints in order (so parts of another group formed under the same key and round are refused).
uint64_t key_fingerprint(std::string_view key);
uint64_t group_fingerprint(const Group& group);

std::vector<uint8_t> encode_part_header(const PartHeader& header);

// Validates magic, version, kind, codec and block size, counts against limits, the chunk's place
// (inside part `part`, starting on a chunk boundary, as long as the part allows), the segments
// (floating dtypes, none empty, summing to count) and the exact length.
Result<PartHeader> decode_part_header(std::span<const uint8_t> bytes, const PartLimits& limits);

// Bytes of each payload tensor the header announces: elements x dtype size when raw, the quant
// encoding's exact size when compressed.
Result<std::vector<uint64_t>> part_payload_sizes(const PartHeader& header);

}  // namespace hivemind::averaging
