// Closure: what the I/O loop queues. It must run and destroy each callable exactly once, keep
// frame-sized callables out of the heap, and a Worker that refuses a post must hand it back intact.
#include <array>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <new>
#include <vector>

#include <gtest/gtest.h>

#include <hivemind/transport/closure.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/frame.h>
#include <hivemind/transport/worker.h>

#include "transport_test_util.h"

// Counts this binary's heap allocations, so a test can tell whether a Closure used the heap.
namespace {
std::atomic<long> g_allocations{0};
}  // namespace

// GCC pairs the inlined malloc of this operator new with the free of this operator delete and
// warns; they do match.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace hivemind::transport {
namespace {

long allocations() {
  return g_allocations.load(std::memory_order_relaxed);
}

// Counts runs and destructions of a callable, however often it is moved.
struct Tally {
  int runs = 0;
  int destroyed = 0;
};

template <std::size_t Padding>
struct Counted {
  Tally* tally;
  bool live = true;  // false once moved from: only a live one counts its destruction
  std::array<unsigned char, Padding> padding{};
  explicit Counted(Tally* t) : tally(t) {}
  Counted(Counted&& other) noexcept : tally(other.tally), live(std::exchange(other.live, false)) {}
  Counted(const Counted&) = delete;
  ~Counted() {
    if (live) ++tally->destroyed;
  }
  void operator()() { ++tally->runs; }
};

// A callable the size of the loop's deferred send (an endpoint, a frame, a completion).
struct FrameSized {
  std::shared_ptr<int> owner;
  OutgoingFrame frame;
  std::function<void(Status)> done;
  void operator()() {}
};

TEST(Closure, SmallAndFrameSizedCallablesAreStoredInside) {
  static_assert(sizeof(FrameSized) <= Closure::kInlineBytes);
  Tally tally;
  FrameSized frame_sized{std::make_shared<int>(1), OutgoingFrame{}, [](Status) {}};
  const long before = allocations();
  {
    Closure small(Counted<0>{&tally});
    Closure frame(std::move(frame_sized));
    Closure moved(std::move(frame));
    small();
    moved();
  }
  EXPECT_EQ(allocations(), before);
  EXPECT_EQ(tally.runs, 1);
  EXPECT_EQ(tally.destroyed, 1);
}

TEST(Closure, LargerCallablesGoOnTheHeapOnceAndAreDestroyedOnce) {
  Tally tally;
  const long before = allocations();
  {
    Closure big(Counted<Closure::kInlineBytes>{&tally});
    EXPECT_EQ(allocations(), before + 1);
    Closure moved(std::move(big));
    Closure assigned;
    assigned = std::move(moved);
    EXPECT_EQ(allocations(), before + 1);  // moving hands over the pointer
    EXPECT_FALSE(big);
    EXPECT_FALSE(moved);
    assigned();
    assigned();
  }
  EXPECT_EQ(tally.runs, 2);
  EXPECT_EQ(tally.destroyed, 1);
}

TEST(Closure, CallablesThatMayThrowWhenMovedGoOnTheHeap) {
  struct ThrowingMove {
    int* runs;
    ThrowingMove(int* r) : runs(r) {}
    ThrowingMove(ThrowingMove&& other) noexcept(false) : runs(other.runs) {}
    void operator()() { ++*runs; }
  };
  int runs = 0;
  const long before = allocations();
  Closure c(ThrowingMove{&runs});
  EXPECT_EQ(allocations(), before + 1);  // a queue's reallocation must not throw halfway
  Closure moved(std::move(c));
  moved();
  EXPECT_EQ(runs, 1);
}

TEST(Closure, HoldsMoveOnlyState) {
  auto value = std::make_unique<int>(41);
  int seen = 0;
  Closure c([value = std::move(value), &seen] { seen = *value + 1; });
  c();
  EXPECT_EQ(seen, 42);
}

TEST(Closure, EmptyFunctionsGiveAnEmptyClosure) {
  EXPECT_FALSE(Closure());
  EXPECT_FALSE(Closure(nullptr));
  EXPECT_FALSE(Closure(std::function<void()>()));
  void (*null_function)() = nullptr;
  EXPECT_FALSE(Closure(null_function));
  EXPECT_TRUE(Closure([] {}));
  Closure reset([] {});
  reset = nullptr;
  EXPECT_FALSE(reset);
}

TEST(Closure, AssigningOverALiveClosureDestroysTheOldCallable) {
  Tally first, second;
  Closure c(Counted<0>{&first});
  c = Closure(Counted<Closure::kInlineBytes>{&second});
  EXPECT_EQ(first.destroyed, 1);
  EXPECT_EQ(second.destroyed, 0);
  c();
  c = nullptr;
  EXPECT_EQ(second.runs, 1);
  EXPECT_EQ(second.destroyed, 1);
}

TEST(ClosureOnTheWorker, PostsRunInOrderWhateverTheirSize) {
  auto context = Context::create(ContextOptions{}).value();
  auto worker = Worker::create(context).value();
  std::vector<int> order;
  std::promise<void> done;
  for (int i = 0; i < 200; ++i) {
    if (i % 3 == 0) {
      Counted<Closure::kInlineBytes> unused(nullptr);
      unused.live = false;
      worker->post([&order, i, big = std::move(unused)] { order.push_back(i); });
    } else {
      worker->post([&order, i] { order.push_back(i); });
    }
  }
  worker->post([&done] { done.set_value(); });
  auto f = done.get_future();
  testing::wait_for(f);
  worker->stop();
  ASSERT_EQ(order.size(), 200u);
  for (int i = 0; i < 200; ++i)
    EXPECT_EQ(order[i], i);
}

TEST(ClosureOnTheWorker, ARefusedPostHandsTheClosureBack) {
  auto context = Context::create(ContextOptions{}).value();
  auto worker = Worker::create(context).value();
  worker->stop();
  Tally tally;
  Closure c(Counted<0>{&tally});
  EXPECT_FALSE(worker->post(std::move(c)));
  ASSERT_TRUE(c);  // neither run nor consumed: the caller can still complete what it carries
  EXPECT_EQ(tally.runs, 0);
  c();
  EXPECT_EQ(tally.runs, 1);
}

}  // namespace
}  // namespace hivemind::transport
