// SwarmKey: the secret shared by the members of a swarm; every connection proves it (handshake.h).
//
// The key file holds the key as hexadecimal text (64 or more hex digits, an even count, surrounding
// whitespace ignored) — what `hivemind-info --new-swarm-key` writes — or, when the content is not
// such text, its raw bytes (at least 32). A key file must be a regular file owned by the user
// running the program and not readable or writable by group or others; anything else is refused
// with an error naming the file and the fix, so a program never runs with a key others can read.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <hivemind/common/result.h>

namespace hivemind::transport {

class SwarmKey {
 public:
  static constexpr size_t kMinBytes = 32;
  static constexpr size_t kMaxBytes = 1024;
  static constexpr size_t kGeneratedBytes = 32;

  // Checks the file's type, owner and mode, then reads and parses it.
  static Result<SwarmKey> load(const std::string& path);
  // From key bytes (kMinBytes..kMaxBytes), for tests and embedders that hold the key themselves.
  static Result<SwarmKey> from_bytes(std::span<const uint8_t> bytes);
  // kGeneratedBytes from the OS random source (OpenSSL RAND_bytes).
  static Result<SwarmKey> generate();

  SwarmKey(const SwarmKey&) = default;
  SwarmKey(SwarmKey&&) = default;
  SwarmKey& operator=(const SwarmKey&) = default;
  SwarmKey& operator=(SwarmKey&&) = default;
  ~SwarmKey();  // wipes the bytes

  // Creates `path` holding this key as hex and a newline, mode 0600: written to a temporary file
  // opened O_EXCL in the same directory, synced, then renamed over `path` (never half-written,
  // never readable by others, even for a moment). Fails when `path` already exists.
  Status write_new(const std::string& path) const;

  std::span<const uint8_t> bytes() const { return bytes_; }
  // The first 8 hex digits of SHA-256(key): names a key in logs without revealing it.
  std::string fingerprint() const;

 private:
  explicit SwarmKey(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
  std::vector<uint8_t> bytes_;
};

}  // namespace hivemind::transport
