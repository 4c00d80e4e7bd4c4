#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <hivemind/common/byte_order.h>
#include <hivemind/transport/handshake.h>

namespace hivemind::transport {
namespace {

void put_short_string(ByteWriter& w, std::string_view text, size_t limit) {
  text = text.substr(0, limit);
  w.u8(static_cast<uint8_t>(text.size()));
  w.raw(text);
}

bool get_short_string(ByteReader& r, std::string& out) {
  uint8_t len = 0;
  return r.u8(len) && r.string(len, out);
}

template <size_t N>
bool get_array(ByteReader& r, std::array<uint8_t, N>& out) {
  std::span<const uint8_t> view;
  if (!r.view(N, view)) return false;
  std::copy(view.begin(), view.end(), out.begin());
  return true;
}

}  // namespace

std::vector<uint8_t> encode_handshake(const HandshakeMessage& m) {
  std::vector<uint8_t> out;
  out.reserve(kMaxHandshakeMessageBytes);
  ByteWriter w(out);
  w.u8(kHandshakeVersion);
  w.u8(static_cast<uint8_t>(m.type));
  switch (m.type) {
    case HandshakeType::kHello:
      w.raw(m.nonce);
      put_short_string(w, m.address, kMaxHandshakeAddressBytes);
      break;
    case HandshakeType::kChallenge:
      w.raw(m.nonce);
      put_short_string(w, m.address, kMaxHandshakeAddressBytes);
      w.raw(m.proof);
      break;
    case HandshakeType::kProof:
      w.raw(m.proof);
      break;
    case HandshakeType::kRefusal:
      w.u8(static_cast<uint8_t>(m.reason));
      put_short_string(w, m.text, kMaxRefusalTextBytes);
      break;
  }
  return out;
}

Result<HandshakeMessage> decode_handshake(std::span<const uint8_t> bytes) {
  if (bytes.size() > kMaxHandshakeMessageBytes) return protocol_error("handshake message too long");
  ByteReader r(bytes);
  uint8_t version = 0;
  uint8_t type = 0;
  if (!r.u8(version) || !r.u8(type)) return protocol_error("truncated handshake message");
  if (version != kHandshakeVersion)
    return protocol_error("unsupported handshake version " + std::to_string(version));
  HandshakeMessage m;
  bool complete = false;
  switch (type) {
    case static_cast<uint8_t>(HandshakeType::kHello):
      m.type = HandshakeType::kHello;
      complete = get_array(r, m.nonce) && get_short_string(r, m.address);
      break;
    case static_cast<uint8_t>(HandshakeType::kChallenge):
      m.type = HandshakeType::kChallenge;
      complete = get_array(r, m.nonce) && get_short_string(r, m.address) && get_array(r, m.proof);
      break;
    case static_cast<uint8_t>(HandshakeType::kProof):
      m.type = HandshakeType::kProof;
      complete = get_array(r, m.proof);
      break;
    case static_cast<uint8_t>(HandshakeType::kRefusal): {
      m.type = HandshakeType::kRefusal;
      uint8_t reason = 0;
      complete = r.u8(reason) && get_short_string(r, m.text);
      if (complete && (reason == 0 || reason > kMaxRefusalReason))
        return protocol_error("unknown handshake refusal reason " + std::to_string(reason));
      m.reason = static_cast<RefusalReason>(reason);
      break;
    }
    default:
      return protocol_error("unknown handshake message type " + std::to_string(type));
  }
  if (!complete) return protocol_error("truncated handshake message");
  if (!r.done()) return protocol_error("trailing bytes after a handshake message");
  return m;
}

Proof compute_proof(const SwarmKey& key, HandshakeRole role, const HandshakeTranscript& t) {
  std::vector<uint8_t> input;
  input.reserve(kHandshakeLabel.size() + 1 + 2 * kNonceBytes + 2 + t.dialed_address.size() +
                t.listener_address.size());
  ByteWriter w(input);
  w.raw(kHandshakeLabel);
  w.u8(static_cast<uint8_t>(role));
  w.raw(t.initiator_nonce);
  w.raw(t.acceptor_nonce);
  put_short_string(w, t.dialed_address, kMaxHandshakeAddressBytes);
  put_short_string(w, t.listener_address, kMaxHandshakeAddressBytes);
  Proof proof{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.bytes().data(), static_cast<int>(key.bytes().size()), input.data(),
       input.size(), proof.data(), &len);
  return proof;
}

bool proofs_equal(const Proof& a, const Proof& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<Nonce> fresh_nonce() {
  Nonce nonce{};
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1)
    return internal_error("RAND_bytes failed to produce a handshake nonce");
  return nonce;
}

std::string_view refusal_reason_name(RefusalReason reason) {
  switch (reason) {
    case RefusalReason::kKeyMismatch:
      return "swarm key mismatch";
    case RefusalReason::kNoKey:
      return "no swarm key";
    case RefusalReason::kBusy:
      return "too many unauthenticated connections";
    case RefusalReason::kProtocol:
      return "handshake protocol error";
  }
  return "unknown";
}

}  // namespace hivemind::transport
