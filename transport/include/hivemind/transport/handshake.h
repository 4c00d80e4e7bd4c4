// The swarm handshake: how two endpoints prove to each other that they hold the same SwarmKey
// before either dispatches a request (documented in docs/wire-formats.md and docs/security.md).
//
// Its messages travel as the metadata of kMessage frames whose method is kHandshakeMethod, so both
// backends carry them with the existing framing (UCX: one short active message, no rendezvous).
//
//   initiator                                   acceptor
//   Hello{nonce_i, dialed address}      ->
//                                       <-      Challenge{nonce_a, listener address, proof_a}
//   Proof{proof_i}, then its requests   ->      (verifies proof_i before dispatching anything)
//
//   proof_r = HMAC-SHA256(key, kHandshakeLabel | role_r | nonce_i | nonce_a |
//                              u8 len | dialed address | u8 len | listener address)
//
// Either side may instead send Refusal{reason, text} and close. The nonces are 32 fresh random
// bytes per connection, so a recorded proof fails against any later connection, and the role in the
// MAC keeps one side's proof from being reflected as the other's. The addresses are the ones each
// side declares (the initiator: the address it dialed; the acceptor: its listener's advertised
// address), not the socket addresses, so NAT and wildcard binds do not break the handshake; they
// bind a proof to the claimed dial, not to a network path (see docs/security.md).
//
// The decoder is a pure function over bytes that validates every field before copying anything;
// the fuzz target (tests/fuzz/transport/handshake_fuzzer.cc) drives it.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/result.h>
#include <hivemind/transport/frame.h>
#include <hivemind/transport/swarm_key.h>

namespace hivemind::transport {

inline constexpr std::string_view kHandshakeMethod = "hivemind.auth";
inline constexpr std::string_view kHandshakeLabel = "hivemind swarm handshake v1";
inline constexpr uint8_t kHandshakeVersion = 1;
inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kProofBytes = 32;  // HMAC-SHA256
inline constexpr size_t kMaxHandshakeAddressBytes = 255;
inline constexpr size_t kMaxRefusalTextBytes = 255;
// The largest handshake message (a Challenge with the longest address).
inline constexpr size_t kMaxHandshakeMessageBytes =
    2 + kNonceBytes + 1 + kMaxHandshakeAddressBytes + kProofBytes;

using Nonce = std::array<uint8_t, kNonceBytes>;
using Proof = std::array<uint8_t, kProofBytes>;

enum class HandshakeType : uint8_t { kHello = 1, kChallenge = 2, kProof = 3, kRefusal = 4 };
enum class HandshakeRole : uint8_t { kInitiator = 1, kAcceptor = 2 };

enum class RefusalReason : uint8_t {
  kKeyMismatch = 1,  // the other side's proof did not verify
  kNoKey = 2,        // the refusing side has no swarm key and will not run the handshake
  kBusy = 3,         // too many connections waiting to authenticate, or too many from this source
  kProtocol = 4,     // an unexpected or malformed handshake message
};
inline constexpr uint8_t kMaxRefusalReason = 4;

struct HandshakeMessage {
  HandshakeType type = HandshakeType::kHello;
  Nonce nonce{};        // kHello, kChallenge
  std::string address;  // kHello: the dialed address; kChallenge: the listener's address
  Proof proof{};        // kChallenge, kProof
  RefusalReason reason = RefusalReason::kProtocol;  // kRefusal
  std::string text;                                 // kRefusal: a human-readable explanation
};

// Validates and decodes one message: version, type, lengths, no trailing bytes.
Result<HandshakeMessage> decode_handshake(std::span<const uint8_t> bytes);
// Encodes `message`; addresses and texts longer than their limits are truncated.
std::vector<uint8_t> encode_handshake(const HandshakeMessage& message);

// What both sides MAC: nonces and the declared addresses.
struct HandshakeTranscript {
  Nonce initiator_nonce{};
  Nonce acceptor_nonce{};
  std::string dialed_address;    // as the initiator sent it in Hello
  std::string listener_address;  // as the acceptor sent it in Challenge
};

Proof compute_proof(const SwarmKey& key, HandshakeRole role, const HandshakeTranscript& transcript);
// Constant-time comparison (CRYPTO_memcmp).
bool proofs_equal(const Proof& a, const Proof& b);
// 32 bytes from the OS random source (RAND_bytes); an error when it fails.
Result<Nonce> fresh_nonce();

// What a peer that has not authenticated may send in one frame: no tensors, no payload, and
// header + method + metadata of at most this many bytes (a handshake message, or a plain request
// that is answered with "peer did not authenticate"). A bigger frame is refused from its header,
// before anything is allocated for it, so a stranger costs at most this much per connection.
inline constexpr size_t kMaxUnauthenticatedFrameBytes = 4096;

std::string_view refusal_reason_name(RefusalReason reason);

}  // namespace hivemind::transport
