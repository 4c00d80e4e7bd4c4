// Bounds-checked little-endian reading and appending writing for the protocol's small messages.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/result.h>

namespace hivemind::protocol {

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  Result<uint8_t> u8() { return fixed<uint8_t>(); }
  Result<uint16_t> u16() { return fixed<uint16_t>(); }
  Result<uint32_t> u32() { return fixed<uint32_t>(); }
  Result<int64_t> i64() { return fixed<int64_t>(); }
  // A u16 length followed by that many bytes; the length is checked against `max_bytes` and against
  // what is left before the string is built.
  Result<std::string> string16(size_t max_bytes, std::string_view what);

  size_t remaining() const { return bytes_.size() - offset_; }

 private:
  template <typename T>
  Result<T> fixed() {
    if (remaining() < sizeof(T)) return protocol_error("message truncated");
    T value;
    std::memcpy(&value, bytes_.data() + offset_,
                sizeof(T));  // the project only targets little-endian hosts
    offset_ += sizeof(T);
    return value;
  }

  std::span<const uint8_t> bytes_;
  size_t offset_ = 0;
};

class ByteWriter {
 public:
  template <typename T>
  void fixed(T value) {
    size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    std::memcpy(bytes_.data() + at, &value, sizeof(T));
  }
  void string16(std::string_view text) {
    fixed<uint16_t>(static_cast<uint16_t>(text.size()));
    size_t at = bytes_.size();
    bytes_.resize(at + text.size());
    if (!text.empty()) std::memcpy(bytes_.data() + at, text.data(), text.size());
  }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

}  // namespace hivemind::protocol
