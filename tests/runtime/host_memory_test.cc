// retain_freed_host_memory: a large block that is freed and allocated again comes back without page
// faults (glibc's default would unmap it on free and fault every page in again).
#include <cstdlib>

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <hivemind/runtime/host_memory.h>

namespace hivemind::runtime {
namespace {

long thread_minor_faults() {
  rusage usage{};
  ::getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_minflt;
}

// Allocates `bytes`, writes one byte per page (volatile, so the compiler keeps every write and the
// allocation), frees the block; returns the minor page faults this took.
long faults_to_touch(size_t bytes) {
  const long before = thread_minor_faults();
  auto* block = static_cast<volatile char*>(std::malloc(bytes));
  if (block == nullptr) return -1;
  for (size_t offset = 0; offset < bytes; offset += 4096)
    block[offset] = 1;
  std::free(const_cast<char*>(block));
  return thread_minor_faults() - before;
}

TEST(HostMemoryTest, AFreedLargeBlockIsReusedWithoutPageFaults) {
#if !defined(__GLIBC__)
  GTEST_SKIP() << "only glibc's allocator is tuned";
#endif
  ASSERT_TRUE(retain_freed_host_memory());
  ASSERT_TRUE(retain_freed_host_memory()) << "a second call must succeed too (idempotent)";
  // 8 MiB: far above glibc's default 128 KiB mmap threshold, so by default the block is unmapped on
  // free and the second pass faults in its 2,048 pages again.
  constexpr size_t kBytes = size_t{8} << 20;
  ASSERT_GT(faults_to_touch(kBytes), 0) << "the first touch of fresh memory faults";
  EXPECT_EQ(faults_to_touch(kBytes), 0);
}

}  // namespace
}  // namespace hivemind::runtime
