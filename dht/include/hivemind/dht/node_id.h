// NodeId: a point in the 160-bit Kademlia id space (node ids and hashed record keys alike).
//
// Record keys are SHA-1 of the key bytes, as in hivemind. Bytes are big-endian, so comparing ids
// byte-wise compares them as numbers, and comparing XOR distances byte-wise orders peers by
// closeness.
#pragma once

#include <array>
#include <bit>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>

namespace hivemind::dht {

class NodeId {
 public:
  static constexpr size_t kBytes = 20;
  static constexpr int kBits = 160;
  using Bytes = std::array<uint8_t, kBytes>;

  constexpr NodeId() : bytes_{} {}
  explicit constexpr NodeId(const Bytes& bytes) : bytes_(bytes) {}

  // SHA-1 of the key bytes (OpenSSL libcrypto).
  static NodeId from_key(std::span<const uint8_t> key);
  static NodeId from_key(std::string_view key);
  static NodeId random(std::mt19937_64& rng);
  // Exactly kBytes bytes, else nullopt.
  static std::optional<NodeId> from_bytes(std::span<const uint8_t> bytes);
  // 40 hex digits, else nullopt.
  static std::optional<NodeId> from_hex(std::string_view hex);
  // A uniformly random id with exactly `prefix_bits` leading bits equal to `prefix`'s and the next
  // bit flipped (prefix_bits < 160): a random point of the k-bucket at that common-prefix length.
  static NodeId random_in_bucket(const NodeId& own, int prefix_bits, std::mt19937_64& rng);

  const Bytes& bytes() const { return bytes_; }
  std::span<const uint8_t> span() const { return bytes_; }

  NodeId distance(const NodeId& other) const {
    Bytes out;
    for (size_t i = 0; i < kBytes; ++i)
      out[i] = bytes_[i] ^ other.bytes_[i];
    return NodeId(out);
  }
  // Number of leading bits shared with `other` (160 when equal).
  int common_prefix_length(const NodeId& other) const;
  // Bit `index` counted from the most significant bit (0..159).
  bool bit(int index) const { return (bytes_[index / 8] >> (7 - index % 8)) & 1; }
  NodeId with_bit(int index, bool value) const;
  bool is_zero() const;

  // True when this id is strictly closer to `target` than `other` is.
  bool closer_to(const NodeId& target, const NodeId& other) const {
    // Word-wise: lookups and routing compare distances in their inner loops.
    for (size_t i = 0; i < kBytes; i += 8) {
      uint64_t a = word(i) ^ target.word(i), b = other.word(i) ^ target.word(i);
      if (a != b) return a < b;
    }
    return false;
  }

  std::string hex() const;
  std::string short_hex() const { return hex().substr(0, 8); }

  // Numeric order (big-endian), compared a word at a time.
  friend std::strong_ordering operator<=>(const NodeId& a, const NodeId& b) {
    for (size_t i = 0; i < kBytes; i += 8) {
      uint64_t x = a.word(i), y = b.word(i);
      if (x != y) return x < y ? std::strong_ordering::less : std::strong_ordering::greater;
    }
    return std::strong_ordering::equal;
  }
  friend bool operator==(const NodeId& a, const NodeId& b) {
    return a.word(0) == b.word(0) && a.word(8) == b.word(8) && a.word(16) == b.word(16);
  }

 private:
  // Bytes [i, i+8) as a big-endian number; the last word (i = 16) holds 4 bytes, zero-padded.
  uint64_t word(size_t i) const {
    uint64_t w = 0;
    size_t n = i + 8 <= kBytes ? 8 : kBytes - i;
    std::memcpy(&w, bytes_.data() + i, n);
    if constexpr (std::endian::native == std::endian::little) w = __builtin_bswap64(w);
    return w;
  }

  Bytes bytes_;
};

struct NodeIdHash {
  size_t operator()(const NodeId& id) const {
    // Ids are uniformly distributed, so any 8 bytes are a good hash.
    size_t h = 0;
    for (int i = 0; i < 8; ++i)
      h = (h << 8) | id.bytes()[static_cast<size_t>(i)];
    return h;
  }
};

}  // namespace hivemind::dht
