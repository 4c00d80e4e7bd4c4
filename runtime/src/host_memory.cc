#include <climits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <hivemind/runtime/host_memory.h>

namespace hivemind::runtime {

bool retain_freed_host_memory() {
#if defined(__GLIBC__)
  // Setting any of these also turns off glibc's dynamic thresholds, which otherwise start at
  // 128 KiB and only grow after large blocks were already unmapped once.
  constexpr int kMmapThreshold = 32 << 20;  // glibc's maximum on 64-bit (HEAP_MAX_SIZE / 2)
  constexpr int kTrimThreshold = INT_MAX;   // trim an arena only above 2 GiB of free top
  // heap_trim unmaps an emptied per-thread heap unless the free space left below it is under the
  // top pad; a pad of one whole heap (64 MiB) keeps every heap. In the main arena it only makes
  // each brk reserve that much more address space.
  constexpr int kTopPad = 64 << 20;
  bool ok = ::mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1;
  ok = ::mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1 && ok;
  ok = ::mallopt(M_TOP_PAD, kTopPad) == 1 && ok;
  return ok;
#else
  return false;
#endif
}

}  // namespace hivemind::runtime
