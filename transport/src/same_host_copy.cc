#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <hivemind/common/byte_order.h>
#include <hivemind/transport/same_host_copy.h>

namespace hivemind::transport {
namespace {

// "8c1f5d7e-...": 32 hex digits with dashes; anything else leaves the id zero (matching no peer).
std::array<uint8_t, 16> read_boot_id() {
  std::array<uint8_t, 16> id{};
  std::FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "re");
  if (f == nullptr) return id;
  char text[64] = {};
  const bool got = std::fgets(text, sizeof(text), f) != nullptr;
  std::fclose(f);
  if (!got) return id;
  std::array<uint8_t, 16> parsed{};
  size_t digits = 0;
  for (const char* c = text; *c != '\0' && *c != '\n'; ++c) {
    if (*c == '-') continue;
    int v = (*c >= '0' && *c <= '9')   ? *c - '0'
            : (*c >= 'a' && *c <= 'f') ? *c - 'a' + 10
            : (*c >= 'A' && *c <= 'F') ? *c - 'A' + 10
                                       : -1;
    if (v < 0 || digits >= 32) return id;
    parsed[digits / 2] = static_cast<uint8_t>(parsed[digits / 2] << 4 | v);
    ++digits;
  }
  return digits == 32 ? parsed : id;
}

HostIdentity read_identity() {
  HostIdentity h;
  h.boot_id = read_boot_id();
  struct stat st {};
  if (::stat("/proc/self/ns/pid", &st) == 0) h.pid_namespace = static_cast<uint64_t>(st.st_ino);
  if (h.pid_namespace == 0) h.boot_id = {};  // half an identity would match wrongly
  return h;
}

}  // namespace

const HostIdentity& this_host() {
  static const HostIdentity identity = read_identity();
  return identity;
}

void append_same_host_trailer(const SameHostTrailer& t, std::vector<uint8_t>& out) {
  const size_t at = out.size();
  out.resize(at + same_host_trailer_size(t.addresses.size()));
  uint8_t* p = out.data() + at;
  store_le<uint64_t>(p, t.token);
  store_le<uint32_t>(p + 8, t.pid);
  store_le<uint32_t>(p + 12, 0);
  std::memcpy(p + 16, t.host.boot_id.data(), 16);
  store_le<uint64_t>(p + 32, t.host.pid_namespace);
  p += kSameHostTrailerFixedBytes;
  for (uint64_t a : t.addresses) {
    store_le<uint64_t>(p, a);
    p += 8;
  }
}

std::vector<uint8_t> encode_same_host_trailer(const SameHostTrailer& trailer) {
  std::vector<uint8_t> out;
  append_same_host_trailer(trailer, out);
  return out;
}

Result<SameHostTrailer> decode_same_host_trailer(std::span<const uint8_t> bytes, uint64_t tensors) {
  // The tensor count comes from a frame header already validated against the limits, so the
  // expected size cannot overflow; compare before reserving anything.
  if (tensors > (SIZE_MAX - kSameHostTrailerFixedBytes) / 8 ||
      bytes.size() != same_host_trailer_size(tensors))
    return protocol_error(fmt::format("same-host trailer of {} bytes for {} tensors (expected {})",
                                      bytes.size(), tensors,
                                      kSameHostTrailerFixedBytes + 8 * tensors));
  const uint8_t* p = bytes.data();
  if (load_le<uint32_t>(p + 12) != 0) return protocol_error("same-host trailer: nonzero padding");
  SameHostTrailer t;
  t.token = load_le<uint64_t>(p);
  t.pid = load_le<uint32_t>(p + 8);
  if (t.pid == 0) return protocol_error("same-host trailer: pid 0");
  std::memcpy(t.host.boot_id.data(), p + 16, 16);
  t.host.pid_namespace = load_le<uint64_t>(p + 32);
  t.addresses.resize(tensors);
  p += kSameHostTrailerFixedBytes;
  for (uint64_t i = 0; i < tensors; ++i, p += 8)
    t.addresses[i] = load_le<uint64_t>(p);
  return t;
}

std::array<uint8_t, kSameHostReplyBytes> encode_same_host_reply(const SameHostReply& reply) {
  std::array<uint8_t, kSameHostReplyBytes> out{};
  store_le<uint64_t>(out.data(), reply.token);
  store_le<uint32_t>(out.data() + 8, static_cast<uint32_t>(reply.outcome));
  store_le<uint32_t>(out.data() + 12, reply.error);
  return out;
}

Result<SameHostReply> decode_same_host_reply(std::span<const uint8_t> bytes) {
  if (bytes.size() != kSameHostReplyBytes)
    return protocol_error(fmt::format("same-host reply of {} bytes (expected {})", bytes.size(),
                                      kSameHostReplyBytes));
  SameHostReply r;
  r.token = load_le<uint64_t>(bytes.data());
  const uint32_t outcome = load_le<uint32_t>(bytes.data() + 8);
  if (outcome < static_cast<uint32_t>(SameHostOutcome::kRead) ||
      outcome > static_cast<uint32_t>(SameHostOutcome::kUnreachable))
    return protocol_error(fmt::format("same-host reply: unknown outcome {}", outcome));
  r.outcome = static_cast<SameHostOutcome>(outcome);
  r.error = load_le<uint32_t>(bytes.data() + 12);
  return r;
}

std::array<uint8_t, kSameHostConfirmBytes> encode_same_host_confirm(uint64_t token) {
  std::array<uint8_t, kSameHostConfirmBytes> out{};
  store_le<uint64_t>(out.data(), token);
  return out;
}

Result<uint64_t> decode_same_host_confirm(std::span<const uint8_t> bytes) {
  if (bytes.size() != kSameHostConfirmBytes)
    return protocol_error(fmt::format("same-host confirmation of {} bytes (expected {})",
                                      bytes.size(), kSameHostConfirmBytes));
  return load_le<uint64_t>(bytes.data());
}

int read_from_process(uint32_t pid, std::span<const uint64_t> remote_addresses,
                      std::span<const std::span<uint8_t>> local) {
  // At most this many segments per call (the kernel's UIO_MAXIOV is 1024).
  constexpr size_t kMaxSegments = 512;
  size_t index = 0, offset = 0;  // the first segment not yet read whole, and how far into it
  while (index < local.size()) {
    iovec mine[kMaxSegments], theirs[kMaxSegments];
    size_t count = 0;
    for (size_t i = index; i < local.size() && count < kMaxSegments; ++i) {
      const size_t skip = i == index ? offset : 0;
      const size_t length = local[i].size() - skip;
      if (length == 0) continue;
      mine[count] = {local[i].data() + skip, length};
      // An address in the other process, never dereferenced here.
      const uintptr_t theirs_at = static_cast<uintptr_t>(remote_addresses[i] + skip);
      theirs[count] = {reinterpret_cast<void*>(theirs_at),  // NOLINT(performance-no-int-to-ptr)
                       length};
      ++count;
    }
    if (count == 0) return 0;
    const ssize_t n = ::process_vm_readv(static_cast<pid_t>(pid), mine, count, theirs, count, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EFAULT;  // no progress: a segment the process does not map
    // Advance over what arrived (whole segments, then into the next).
    size_t left = static_cast<size_t>(n);
    while (left > 0 && index < local.size()) {
      const size_t room = local[index].size() - offset;
      const size_t take = std::min(room, left);
      offset += take;
      left -= take;
      if (offset == local[index].size()) {
        ++index;
        offset = 0;
      }
    }
    while (index < local.size() && local[index].size() == offset) {
      ++index;
      offset = 0;
    }
  }
  return 0;
}

void allow_same_host_reads() {
#ifdef PR_SET_PTRACER
  static const bool done = [] {
    (void)::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);  // EINVAL without Yama: fine
    return true;
  }();
  (void)done;
#endif
}

}  // namespace hivemind::transport
