// Little-endian bytes: the one place where integers and floats become wire bytes and back.
//
// Every wire format of the project is little-endian: transport frames (and the UCX split-metadata
// sequence number), DHT messages, expert RPC messages and the quantized-tensor header. load_le and
// store_le are correct on any host and compile to one plain, unaligned load or store on a
// little-endian one.
//
// ByteReader is a cursor over received bytes whose reads never go past the end: a read that does
// not fit returns false and leaves the cursor where it was, so a decoder tests one bool per field
// and says itself what was truncated. It never allocates on its own behalf, and `string()` copies
// only a length the decoder has already checked against its limit. ByteWriter appends to a vector
// the caller owns (and may have reserved).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace hivemind {

static_assert(std::endian::native == std::endian::little || std::endian::native == std::endian::big,
              "byte_order.h handles little- and big-endian hosts, not mixed-endian ones");

// The types with a fixed little-endian wire form: integers of 1 to 8 bytes, IEEE-754 float and
// double (sent as the little-endian bytes of their bit pattern).
template <typename T>
concept WireScalar = (std::is_integral_v<T> && !std::is_same_v<T, bool> && sizeof(T) <= 8) ||
                     (std::is_same_v<T, float> && sizeof(float) == 4) ||
                     (std::is_same_v<T, double> && sizeof(double) == 8);

namespace byte_order_detail {
template <size_t N>
struct UnsignedOfSize;
template <>
struct UnsignedOfSize<1> {
  using type = uint8_t;
};
template <>
struct UnsignedOfSize<2> {
  using type = uint16_t;
};
template <>
struct UnsignedOfSize<4> {
  using type = uint32_t;
};
template <>
struct UnsignedOfSize<8> {
  using type = uint64_t;
};
template <typename T>
using Bits = typename UnsignedOfSize<sizeof(T)>::type;
}  // namespace byte_order_detail

// Reads a T from the sizeof(T) little-endian bytes at `p` (any alignment).
template <WireScalar T>
T load_le(const uint8_t* p) {
  using U = byte_order_detail::Bits<T>;
  U bits = 0;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&bits, p, sizeof bits);
  } else {
    for (size_t i = 0; i < sizeof(U); ++i)
      bits = static_cast<U>(bits | static_cast<U>(static_cast<U>(p[i]) << (8 * i)));
  }
  return std::bit_cast<T>(bits);
}

// Writes `value` as sizeof(T) little-endian bytes at `p` (any alignment).
template <WireScalar T>
void store_le(uint8_t* p, T value) {
  using U = byte_order_detail::Bits<T>;
  const U bits = std::bit_cast<U>(value);
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(p, &bits, sizeof bits);
  } else {
    for (size_t i = 0; i < sizeof(U); ++i)
      p[i] = static_cast<uint8_t>(bits >> (8 * i));
  }
}

// Bytes of the unsigned LEB128 encoding of `value` (1 to 10).
constexpr size_t varint_size(uint64_t value) {
  size_t n = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++n;
  }
  return n;
}

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  size_t offset() const { return offset_; }
  size_t remaining() const { return bytes_.size() - offset_; }
  bool done() const { return offset_ == bytes_.size(); }

  [[nodiscard]] bool u8(uint8_t& value) { return fixed(value); }
  [[nodiscard]] bool u16(uint16_t& value) { return fixed(value); }
  [[nodiscard]] bool u32(uint32_t& value) { return fixed(value); }
  [[nodiscard]] bool u64(uint64_t& value) { return fixed(value); }
  [[nodiscard]] bool i64(int64_t& value) { return fixed(value); }

  // Canonical unsigned LEB128 of at most 10 bytes. Overlong encodings (a final zero byte after the
  // first, or bits past 64) are refused, so that every value has exactly one encoding.
  [[nodiscard]] bool varint(uint64_t& value) {
    uint64_t result = 0;
    size_t at = offset_;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at == bytes_.size()) return false;
      const uint8_t byte = bytes_[at++];
      if (shift == 63 && byte > 1) return false;
      result |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) {
        if (byte == 0 && shift > 0) return false;
        value = result;
        offset_ = at;
        return true;
      }
    }
    return false;
  }

  // A view of the next `n` bytes, into the reader's span (no copy).
  [[nodiscard]] bool view(size_t n, std::span<const uint8_t>& out) {
    if (remaining() < n) return false;
    out = bytes_.subspan(offset_, n);
    offset_ += n;
    return true;
  }

  // The next `n` bytes as a string; `n` must already be checked against the caller's limit.
  [[nodiscard]] bool string(size_t n, std::string& out) {
    if (remaining() < n) return false;
    out.assign(reinterpret_cast<const char*>(bytes_.data() + offset_), n);
    offset_ += n;
    return true;
  }

 private:
  template <WireScalar T>
  bool fixed(T& value) {
    if (remaining() < sizeof(T)) return false;
    value = load_le<T>(bytes_.data() + offset_);
    offset_ += sizeof(T);
    return true;
  }

  std::span<const uint8_t> bytes_;
  size_t offset_ = 0;
};

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<uint8_t>& out) : out_(out) {}

  void u8(uint8_t value) { out_.push_back(value); }
  void u16(uint16_t value) { fixed(value); }
  void u32(uint32_t value) { fixed(value); }
  void u64(uint64_t value) { fixed(value); }
  void i64(int64_t value) { fixed(value); }

  // Unsigned LEB128 (the canonical, shortest encoding).
  void varint(uint64_t value) {
    while (value >= 0x80) {
      out_.push_back(static_cast<uint8_t>(value | 0x80));
      value >>= 7;
    }
    out_.push_back(static_cast<uint8_t>(value));
  }

  void raw(std::span<const uint8_t> bytes) { out_.insert(out_.end(), bytes.begin(), bytes.end()); }
  void raw(std::string_view text) { out_.insert(out_.end(), text.begin(), text.end()); }

 private:
  template <WireScalar T>
  void fixed(T value) {
    const size_t at = out_.size();
    out_.resize(at + sizeof(T));
    store_le<T>(out_.data() + at, value);
  }

  std::vector<uint8_t>& out_;
};

}  // namespace hivemind
