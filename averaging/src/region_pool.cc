#include "region_pool.h"

#include <cstdlib>
#include <new>

#include <sys/mman.h>

namespace hivemind::averaging {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

std::shared_ptr<uint8_t> allocate_region(size_t bytes) {
  if (bytes >= kHugePage) {
    const size_t mapped = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    // Advice only: where THP is off this changes nothing.
    (void)madvise(p, mapped, MADV_HUGEPAGE);
    return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p),
                                    [mapped](uint8_t* q) { munmap(q, mapped); });
  }
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + (bytes == 0 ? 64 : 0));
  if (p == nullptr) throw std::bad_alloc();
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
}

}  // namespace

std::shared_ptr<uint8_t> RegionPool::acquire(size_t bytes) {
  std::lock_guard lock(mu_);
  // use_count() == 1: only the pool holds it, and nobody can copy it without this lock.
  Cached* best = nullptr;
  for (auto& c : cached_) {
    if (c.region.use_count() == 1 && c.capacity >= bytes &&
        (best == nullptr || c.capacity < best->capacity))
      best = &c;
  }
  if (best != nullptr) return best->region;
  auto region = allocate_region(bytes);
  // Drop idle regions too small for this request while the new one would not fit the limits, so
  // that a pool warmed on small rounds adapts to larger ones.
  for (size_t i = 0; i < cached_.size() && (cached_.size() >= max_cached_ ||
                                            cached_bytes_ + bytes > max_cached_bytes_);) {
    if (cached_[i].region.use_count() == 1 && cached_[i].capacity < bytes) {
      cached_bytes_ -= cached_[i].capacity;
      cached_.erase(cached_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  if (cached_.size() < max_cached_ && cached_bytes_ + bytes <= max_cached_bytes_) {
    cached_.push_back({region, bytes});
    cached_bytes_ += bytes;
  }
  return region;
}

transport::Buffer RegionPool::buffer(size_t bytes) {
  auto region = acquire(bytes);
  uint8_t* data = region.get();  // before the move below: argument order is unspecified
  return transport::Buffer::wrap(data, bytes, transport::MemoryType::kHost, -1, std::move(region));
}

}  // namespace hivemind::averaging
