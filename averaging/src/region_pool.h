// RegionPool: host memory a backend reuses from round to round.
//
// Touching fresh memory costs a page fault per 4 KiB (on the VMs this runs on, ~300 ms for 64 MiB,
// as long as the round itself), so a round's staging, sums and receive blocks come from here and
// go back when their last user (a reply still on the wire, say) lets go. Large regions are mapped
// with transparent huge pages requested, so even a first round faults 512x less often.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <hivemind/transport/buffer.h>

namespace hivemind::averaging {

class RegionPool {
 public:
  // Keeps at most `max_cached` regions, of at most `max_cached_bytes` in all, for reuse; more can
  // be in use at once.
  RegionPool(size_t max_cached, uint64_t max_cached_bytes)
      : max_cached_(max_cached), max_cached_bytes_(max_cached_bytes) {}

  // A region of at least `bytes` bytes (64-byte aligned, contents undefined). It returns to the
  // pool when every copy of the pointer is gone. Thread-safe.
  std::shared_ptr<uint8_t> acquire(size_t bytes);
  // The same as a host Buffer of exactly `bytes` bytes.
  transport::Buffer buffer(size_t bytes);

 private:
  struct Cached {
    std::shared_ptr<uint8_t> region;
    size_t capacity = 0;
  };
  const size_t max_cached_;
  const uint64_t max_cached_bytes_;
  std::mutex mu_;
  uint64_t cached_bytes_ = 0;
  std::vector<Cached> cached_;
};

}  // namespace hivemind::averaging
