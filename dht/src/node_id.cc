#include <bit>

#include <openssl/evp.h>

#include <hivemind/dht/node_id.h>

namespace hivemind::dht {

NodeId NodeId::from_key(std::span<const uint8_t> key) {
  Bytes out{};
  unsigned int length = 0;
  // EVP_Digest is the non-deprecated one-shot interface of OpenSSL 3.
  EVP_Digest(key.data(), key.size(), out.data(), &length, EVP_sha1(), nullptr);
  return NodeId(out);
}

NodeId NodeId::from_key(std::string_view key) {
  return from_key(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(key.data()), key.size()));
}

NodeId NodeId::random(std::mt19937_64& rng) {
  Bytes out;
  for (size_t i = 0; i < kBytes; i += 8) {
    uint64_t word = rng();
    for (size_t j = i; j < std::min(i + 8, kBytes); ++j) {
      out[j] = static_cast<uint8_t>(word);
      word >>= 8;
    }
  }
  return NodeId(out);
}

std::optional<NodeId> NodeId::from_bytes(std::span<const uint8_t> bytes) {
  if (bytes.size() != kBytes) return std::nullopt;
  Bytes out;
  std::copy(bytes.begin(), bytes.end(), out.begin());
  return NodeId(out);
}

std::optional<NodeId> NodeId::from_hex(std::string_view hex) {
  if (hex.size() != 2 * kBytes) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Bytes out;
  for (size_t i = 0; i < kBytes; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return NodeId(out);
}

NodeId NodeId::random_in_bucket(const NodeId& own, int prefix_bits, std::mt19937_64& rng) {
  NodeId id = random(rng);
  Bytes out = id.bytes_;
  for (int bit = 0; bit <= prefix_bits && bit < kBits; ++bit) {
    bool value = bit < prefix_bits ? own.bit(bit) : !own.bit(bit);
    uint8_t mask = static_cast<uint8_t>(0x80u >> (bit % 8));
    if (value)
      out[static_cast<size_t>(bit / 8)] |= mask;
    else
      out[static_cast<size_t>(bit / 8)] &= static_cast<uint8_t>(~mask);
  }
  return NodeId(out);
}

int NodeId::common_prefix_length(const NodeId& other) const {
  for (size_t i = 0; i < kBytes; ++i) {
    uint8_t x = bytes_[i] ^ other.bytes_[i];
    if (x != 0) return static_cast<int>(i * 8) + std::countl_zero(x);
  }
  return kBits;
}

NodeId NodeId::with_bit(int index, bool value) const {
  Bytes out = bytes_;
  uint8_t mask = static_cast<uint8_t>(0x80u >> (index % 8));
  if (value)
    out[static_cast<size_t>(index / 8)] |= mask;
  else
    out[static_cast<size_t>(index / 8)] &= static_cast<uint8_t>(~mask);
  return NodeId(out);
}

bool NodeId::is_zero() const {
  for (uint8_t b : bytes_) {
    if (b != 0) return false;
  }
  return true;
}

std::string NodeId::hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * kBytes, '0');
  for (size_t i = 0; i < kBytes; ++i) {
    out[2 * i] = kDigits[bytes_[i] >> 4];
    out[2 * i + 1] = kDigits[bytes_[i] & 15];
  }
  return out;
}

}  // namespace hivemind::dht
