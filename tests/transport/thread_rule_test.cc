// Thread rules are checked where HIVEMIND_CHECK_THREADS is defined (debug and sanitizer builds): a
// method documented "I/O thread only" or "not from the I/O thread" aborts, naming itself, when
// called from the wrong thread. Release builds compile the checks out and skip these tests.
#include <memory>

#include <gtest/gtest.h>

#include <hivemind/transport/context.h>
#include <hivemind/transport/worker.h>

#include "worker_impl.h"

namespace hivemind::transport {
namespace {

std::shared_ptr<Worker> make_worker() {
  ContextOptions options;
  options.spin = std::chrono::microseconds(0);
  return Worker::create(Context::create(options).value()).value();
}

#if defined(HIVEMIND_CHECK_THREADS)
#define SKIP_WITHOUT_THREAD_CHECKS() (void)0
#else
#define SKIP_WITHOUT_THREAD_CHECKS()                                                           \
  GTEST_SKIP() << "thread-rule checks are compiled out in this build (HIVEMIND_THREAD_CHECKS " \
                  "is off: release builds); debug and sanitizer builds run this test"
#endif

// The death tests' children re-run the binary from the start ("threadsafe" style), since the
// parent has a worker thread running when it forks.
class ThreadRuleDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(ThreadRuleDeathTest, IoThreadOnlyMethodFromAnotherThreadAborts) {
  SKIP_WITHOUT_THREAD_CHECKS();
  EXPECT_DEATH(
      {
        auto worker = make_worker();
        worker->impl().defer([] {});  // the test thread, not the worker's
      },
      "thread rule broken: .*Worker::Impl::defer.* must run on the I/O thread");
}

TEST_F(ThreadRuleDeathTest, NotFromTheIoThreadMethodOnTheIoThreadAborts) {
  SKIP_WITHOUT_THREAD_CHECKS();
  EXPECT_DEATH(
      {
        auto worker = make_worker();
        worker->run_sync([&] { worker->stop(); });  // stop() would join its own thread
      },
      "thread rule broken: .*Worker::stop.* must run off the I/O thread");
}

// The same calls from the right threads pass, including work that run_sync runs inline on its
// caller once the loop has ended.
TEST(ThreadRule, RightThreadsPass) {
  auto worker = make_worker();
  bool deferred_ran = false;
  worker->run_sync([&] {
    worker->impl().defer([&] { deferred_ran = true; });
    EXPECT_TRUE(worker->impl().in_loop());
  });
  worker->run_sync([] {});  // the deferred task ran before this one
  EXPECT_TRUE(deferred_ran);
  EXPECT_FALSE(worker->impl().in_loop());
  worker->stop();
  EXPECT_TRUE(worker->impl().in_loop()) << "the loop has ended: the caller owns what it owned";
  int inline_result = worker->run_sync([&] {
    worker->impl().defer([] {});
    return 7;
  });
  EXPECT_EQ(inline_result, 7);
}

}  // namespace
}  // namespace hivemind::transport
