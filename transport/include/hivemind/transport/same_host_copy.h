// Same-host copy: the receiver reads a large payload straight out of the sender's memory
// (process_vm_readv, Linux "cross-memory attach"), one copy instead of a copy into shared memory
// and one out of it.
//
// Why here and not in UCX: UCX does this itself (its cma transport), but not on endpoints that ask
// for peer-failure handling, which ours must: UCX then requires memory invalidation of every
// rendezvous lane, cma cannot invalidate, and UCX falls back to copying through its shared-memory
// FIFO. We keep failure handling and get the single copy back by confirming each read instead of
// invalidating: the receiver reads, asks the sender, and delivers only if the sender still held the
// message's memory when it answered (docs/wire-formats.md, "UCX same-host copy").
//
// Only between processes that proved the swarm key: the receiver reads whatever process and
// addresses the frame names (of its own user, as the kernel allows), so an anonymous peer must not
// be the one naming them. Without a swarm key payloads go the ordinary way.
//
// This header holds the wire messages (validated before anything is allocated; fuzz target
// `transport_same_host_copy`) and the host identity that decides whether a peer is on this host.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/result.h>

namespace hivemind::transport {

// What Endpoint::lanes() lists once a UCX endpoint moved a payload this way.
inline constexpr std::string_view kSameHostCopyLane = "same-host-copy";

// A kernel instance and pid namespace: two processes with equal identities can address each
// other's pids. boot_id changes at every boot; the namespace inode tells containers apart.
struct HostIdentity {
  std::array<uint8_t, 16> boot_id{};
  uint64_t pid_namespace = 0;
  bool operator==(const HostIdentity&) const = default;
};

// This process's identity (read once). All-zero when /proc does not say, which matches no peer.
const HostIdentity& this_host();

// What follows a frame's prefix and metadata in a same-host frame: where the sender's tensors are.
struct SameHostTrailer {
  uint64_t token = 0;  // the sender's name for this send (unique per endpoint)
  uint32_t pid = 0;
  HostIdentity host;
  std::vector<uint64_t> addresses;  // one per tensor, in order (an empty tensor's is ignored)
};

inline constexpr size_t kSameHostTrailerFixedBytes = 8 + 4 + 4 + 16 + 8;

// Bytes of a trailer for `tensors` tensors.
constexpr size_t same_host_trailer_size(uint64_t tensors) {
  return kSameHostTrailerFixedBytes + 8 * tensors;
}

std::vector<uint8_t> encode_same_host_trailer(const SameHostTrailer& trailer);
// Appends the encoding to `out` (the frame header under construction).
void append_same_host_trailer(const SameHostTrailer& trailer, std::vector<uint8_t>& out);
// Exactly same_host_trailer_size(tensors) bytes; the padding must be zero.
Result<SameHostTrailer> decode_same_host_trailer(std::span<const uint8_t> bytes, uint64_t tensors);

// The receiver's answer to a same-host frame.
enum class SameHostOutcome : uint32_t {
  kRead = 1,        // read into the destination: confirm the memory was still the message's
  kReleased = 2,    // done without reading (the receiver refused the frame): nothing to confirm
  kUnreachable = 3  // cannot read here (another host, no permission, device destination): send it
                    // the ordinary way, and do not offer this endpoint same-host frames again
};

struct SameHostReply {
  uint64_t token = 0;
  SameHostOutcome outcome = SameHostOutcome::kRead;
  uint32_t error = 0;  // the errno of a failed read, for the sender's log
};

inline constexpr size_t kSameHostReplyBytes = 16;
inline constexpr size_t kSameHostConfirmBytes = 8;

std::array<uint8_t, kSameHostReplyBytes> encode_same_host_reply(const SameHostReply& reply);
Result<SameHostReply> decode_same_host_reply(std::span<const uint8_t> bytes);
std::array<uint8_t, kSameHostConfirmBytes> encode_same_host_confirm(uint64_t token);
Result<uint64_t> decode_same_host_confirm(std::span<const uint8_t> bytes);

// Reads sizes[i] bytes at remote_addresses[i] of process `pid` into local[i], all of them, looping
// over short reads. On failure returns the errno (EPERM: not allowed, ESRCH: no such process,
// EFAULT: an address the process does not map), with nothing promised about what landed.
int read_from_process(uint32_t pid, std::span<const uint64_t> remote_addresses,
                      std::span<const std::span<uint8_t>> local);

// Lets processes of the same user read this one's memory under Yama's ptrace_scope=1 (the
// default of most distributions; UCX's cma transport does the same). Idempotent; without Yama a
// no-op.
void allow_same_host_reads();

}  // namespace hivemind::transport
