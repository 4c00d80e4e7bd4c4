// GPU tensors (label gpu; skipped with a reason where no CUDA device exists): device tensors sent
// through pinned staging over every backend, and between two processes through CUDA IPC.
#include <gtest/gtest.h>

#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/staging.h>

#include "child_server.h"
#include "test_env.h"
#include "transport_test_util.h"

namespace hivemind::transport {
namespace {

using namespace std::chrono_literals;

Buffer device_pattern(size_t n, uint32_t seed, Buffer* host_copy) {
  *host_copy = testing::pattern_buffer(n, seed);
  Buffer dev = allocate_device(n, 0).value();
  EXPECT_TRUE(copy_to_device(*host_copy, dev).is_ok());
  return dev;
}

class GpuStagingTest : public ::testing::TestWithParam<testing::BackendParam> {};

TEST_P(GpuStagingTest, DeviceTensorsAreStagedAndComeBackIntact) {
  HIVEMIND_REQUIRE_CUDA();
  ContextOptions o;
  o.ucx_config = GetParam().ucx_config;
  auto ctx = Context::create(o).value();
  auto sw = Worker::create(ctx).value();
  auto cw = Worker::create(ctx).value();
  auto server = rpc::Server::create(sw, GetParam().scheme + "://127.0.0.1:0").value();
  server->handle("echo", [](Message m, rpc::Responder r) { r.reply(std::move(m)); });
  auto client = rpc::Client::create(cw);
  for (size_t n : {size_t{1}, size_t{100000}, size_t{9u << 20}}) {  // 9 MiB spans three 4 MiB slots
    Buffer expected;
    Message m;
    m.tensors.push_back(device_pattern(n, static_cast<uint32_t>(n), &expected));
    // Responses land in pinned slots, then go to the device; check the device copy.
    auto f = client->call(server->address(), "echo", std::move(m), Deadline::after(30s));
    auto r = testing::wait_for(f);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    Buffer back = allocate_device(n, 0).value();
    ASSERT_TRUE(copy_to_device(r->tensors[0], back).is_ok());
    auto pool = PinnedPool::create(4 << 20, 4).value();
    Message probe;
    probe.tensors.push_back(back);
    auto host = stage_to_host(probe, *pool).value();
    EXPECT_TRUE(testing::same_bytes(host.tensors[0], expected)) << n;
  }
  client.reset();
  server.reset();
  cw->stop();
  sw->stop();
}

INSTANTIATE_TEST_SUITE_P(Backends, GpuStagingTest, ::testing::ValuesIn(testing::all_backends()),
                         testing::param_name);

TEST(GpuIpc, DeviceTensorCrossesProcessesWithOneDeviceCopy) {
  HIVEMIND_REQUIRE_CUDA();
  ChildServer child;
  ASSERT_TRUE(child.start("tcp://127.0.0.1:0", ""));
  std::string address = child.wait_line("ADDR ", 20s);
  ASSERT_FALSE(address.empty());
  auto ctx = Context::create({}).value();
  auto w = Worker::create(ctx).value();
  auto client = rpc::Client::create(w);
  Buffer expected;
  Buffer dev = device_pattern(3u << 20, 11, &expected);
  Message m;
  m.metadata = export_ipc(dev).value();
  auto f = client->call(address, "ipc_copy", std::move(m), Deadline::after(30s));
  auto r = testing::wait_for(f);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->tensors.size(), 1u);
  EXPECT_TRUE(testing::same_bytes(r->tensors[0], expected));
  client.reset();
  w->stop();
}

TEST(GpuStaging, PinnedPoolSlotsReturnAndExhaust) {
  HIVEMIND_REQUIRE_CUDA();
  auto pool = PinnedPool::create(1024, 2).value();
  {
    auto a = pool->acquire(1024).value();
    auto b = pool->acquire(10).value();
    EXPECT_EQ(pool->acquire(1).status().code(), StatusCode::kNoMemory);  // limit + 1
    EXPECT_EQ(pool->free_slots(), 0u);
  }
  EXPECT_EQ(pool->free_slots(), 2u);
  EXPECT_EQ(pool->acquire(1025).status().code(), StatusCode::kNoMemory);
}

// Runs everywhere: without a device, device paths refuse cleanly rather than touch host memory.
TEST(GpuStaging, WithoutCudaDeviceTensorsAreRefusedNotMisread) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present";
  ContextOptions o;
  o.enable_ucx = false;
  auto ctx = Context::create(o).value();
  auto w = Worker::create(ctx).value();
  auto server = rpc::Server::create(w, "tcp://127.0.0.1:0").value();
  server->handle("echo", [](Message m, rpc::Responder r) { r.reply(std::move(m)); });
  auto client = rpc::Client::create(w);
  static uint8_t fake[16];
  Message m;
  m.tensors.push_back(Buffer::wrap(fake, sizeof(fake), MemoryType::kCuda, 0, nullptr));
  auto f = client->call(server->address(), "echo", std::move(m), Deadline::after(10s));
  auto r = testing::wait_for(f);
  ASSERT_FALSE(r.is_ok());
  EXPECT_TRUE(r.status().code() == StatusCode::kUnsupported ||
              r.status().code() == StatusCode::kNoMemory ||
              r.status().code() == StatusCode::kInternal)
      << r.status().to_string();
  client.reset();
  server.reset();
  w->stop();
}

}  // namespace
}  // namespace hivemind::transport
