// HostStagedBackend on a GPU (label gpu; skipped with a printed reason without a CUDA device): two
// members in this process, each with its own transport, average CUDA tensors over the transport
// backend, and a round whose other member never comes leaves the device tensors as they were.
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <hivemind/averaging/host_staged_backend.h>
#include <hivemind/averaging/transport_backend.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/worker.h>

#include "test_env.h"

namespace hivemind::averaging {
namespace {

using namespace std::chrono_literals;

struct Member {
  std::shared_ptr<transport::Worker> worker;
  std::shared_ptr<transport::rpc::Server> server;
  std::shared_ptr<transport::rpc::Client> client;
  std::shared_ptr<TransportBackend> transport;
  std::unique_ptr<HostStagedBackend> staged;
  float* device = nullptr;  // kElements floats on device 0

  void stop() {
    if (transport) transport->close();
    if (client) client->close();
    if (server) server->close();
    if (worker) worker->stop();
    if (device) cudaFree(device);
  }
};

constexpr size_t kElements = 3 * 1024 * 1024 + 7;  // 12 MiB and a bit: several chunks per part

std::vector<float> member_values(size_t member) {
  std::vector<float> values(kElements);
  for (size_t i = 0; i < kElements; ++i)
    values[i] = static_cast<float>((i % 1000) * (member + 1)) - 250.0f * static_cast<float>(member);
  return values;
}

class HostStagedGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HIVEMIND_REQUIRE_CUDA();
    transport::ContextOptions options;
    options.spin = 0us;
    context_ = transport::Context::create(options).value();
    for (size_t i = 0; i < 2; ++i) {
      Member m;
      m.worker = transport::Worker::create(context_, "staged" + std::to_string(i)).value();
      m.server = transport::rpc::Server::create(m.worker, "tcp://127.0.0.1:0").value();
      m.client = transport::rpc::Client::create(m.worker);
      m.transport = TransportBackend::create(m.server, m.client, {}).value();
      m.staged = std::make_unique<HostStagedBackend>(m.transport);
      ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&m.device), kElements * sizeof(float)),
                cudaSuccess);
      auto values = member_values(i);
      ASSERT_EQ(
          cudaMemcpy(m.device, values.data(), kElements * sizeof(float), cudaMemcpyHostToDevice),
          cudaSuccess);
      members_.push_back(std::move(m));
    }
  }
  void TearDown() override {
    for (auto& m : members_)
      m.stop();
  }

  Group group_for(size_t self, uint64_t round) const {
    Group g;
    g.key = "run42.dense";
    g.round = round;
    for (const auto& m : members_)
      g.members.push_back({m.server->address(), {"transport"}, ""});
    g.self = self;
    g.backend = "transport";
    return g;
  }

  std::vector<TensorRef> refs(size_t member) const {
    return {{members_[member].device, kElements, quant::DType::kFloat32,
             transport::MemoryType::kCuda, 0}};
  }

  std::vector<float> read(size_t member) const {
    std::vector<float> out(kElements);
    EXPECT_EQ(cudaMemcpy(out.data(), members_[member].device, kElements * sizeof(float),
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
    return out;
  }

  std::shared_ptr<transport::Context> context_;
  std::vector<Member> members_;
};

TEST_F(HostStagedGpuTest, TwoMembersAverageCudaTensorsOverTheTransport) {
  std::string device_id;
  ASSERT_TRUE(members_[0].staged->usable_for(refs(0), device_id));
  Status statuses[2];
  RoundReport reports[2];
  const Deadline deadline = Deadline::after(60s);
  std::thread other([&] {
    statuses[1] =
        members_[1].staged->all_reduce_mean(group_for(1, 1), refs(1), deadline, reports[1]);
  });
  statuses[0] = members_[0].staged->all_reduce_mean(group_for(0, 1), refs(0), deadline, reports[0]);
  other.join();
  ASSERT_TRUE(statuses[0].is_ok()) << statuses[0].to_string();
  ASSERT_TRUE(statuses[1].is_ok()) << statuses[1].to_string();
  const auto a = member_values(0), b = member_values(1);
  const auto got0 = read(0), got1 = read(1);
  for (size_t i = 0; i < kElements; ++i) {
    const float mean = (a[i] + b[i]) / 2;
    ASSERT_NEAR(got0[i], mean, 1e-6 * std::abs(mean) + 1e-6) << "element " << i;
  }
  EXPECT_EQ(got0, got1);
  EXPECT_GT(reports[0].bytes_sent, 0u);
}

TEST_F(HostStagedGpuTest, AFailedRoundLeavesTheDeviceTensorsAsTheyWere) {
  RoundReport report;
  // Member 1 never calls: member 0's round ends at its deadline.
  Status status = members_[0].staged->all_reduce_mean(group_for(0, 1), refs(0),
                                                      Deadline::after(1500ms), report);
  EXPECT_EQ(status.code(), StatusCode::kTimeout) << status.to_string();
  EXPECT_EQ(read(0), member_values(0));
}

}  // namespace
}  // namespace hivemind::averaging
