// Host memory policy of a process that runs expert batches.
//
// A batch allocates and frees tensors of the same sizes again and again (activations, gradients,
// the optimizer's temporaries, the concatenated batch). glibc's default policy hands large freed
// blocks back to the kernel: blocks above its mmap threshold are unmapped on free, the top of an
// arena is trimmed, and an emptied per-thread heap is unmapped. The next batch then touches fresh
// pages, and every first touch is a page fault: tens of thousands per ffn backward run, a third of
// its time on the paravirtualised VM of docs/benchmarks.md (runtime section), and a different
// number on every run, which made the runtime-vs-direct benchmark ratio noise.
#pragma once

namespace hivemind::runtime {

// Makes the C library keep freed memory mapped for reuse instead of returning it to the kernel:
// blocks up to 32 MiB (the largest threshold glibc accepts) come from the arenas, arenas are never
// trimmed below 2 GiB, and emptied per-thread heaps stay (a top pad of one heap, 64 MiB). The
// process's resident size then stays at its peak, as with LibTorch's caching allocator on a GPU.
// Process-wide and idempotent; Runtime::start() calls it unless RuntimeOptions says otherwise.
// Returns false where the C library offers no such control (not glibc) or refused a setting.
bool retain_freed_host_memory();

}  // namespace hivemind::runtime
