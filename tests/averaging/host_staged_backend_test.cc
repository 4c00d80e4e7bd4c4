// HostStagedBackend: host tensors pass straight through to the wrapped backend; CUDA tensors are
// refused where no device can stage them; on a GPU (label gpu, host_staged_gpu_test.cc) two
// members' CUDA tensors average over the transport.
#include <vector>

#include <gtest/gtest.h>

#include <hivemind/averaging/host_staged_backend.h>

#include "test_env.h"

namespace hivemind::averaging {
namespace {

// Records what reaches it and answers what the test says.
class RecordingBackend final : public Backend {
 public:
  std::string_view name() const override { return "transport"; }
  bool usable_for(std::span<const TensorRef>, std::string& device_id) const override {
    device_id = "from-inner";
    return true;
  }
  Result<std::vector<uint8_t>> leader_setup(const Group&) override {
    return std::vector<uint8_t>{7, 8};
  }
  Status all_reduce_mean(const Group& group, std::span<const TensorRef> tensors, Deadline,
                         RoundReport& report) override {
    seen.assign(tensors.begin(), tensors.end());
    rounds.push_back(group.round);
    report.bytes_sent += 1;
    return answer;
  }

  std::vector<TensorRef> seen;
  std::vector<uint64_t> rounds;
  Status answer;
};

Group group_of_two() {
  Group g;
  g.key = "run42.dense";
  g.round = 3;
  g.members = {{"tcp://127.0.0.1:1", {"transport"}, ""}, {"tcp://127.0.0.1:2", {"transport"}, ""}};
  g.backend = "transport";
  return g;
}

TEST(HostStagedBackend, HostTensorsPassStraightThrough) {
  auto inner = std::make_shared<RecordingBackend>();
  HostStagedBackend staged(inner);
  EXPECT_EQ(staged.name(), "transport");

  std::vector<float> a(5, 1.0f), b(3, 2.0f);
  std::vector<TensorRef> tensors = {{a.data(), a.size()}, {b.data(), b.size()}};
  std::string device_id;
  EXPECT_TRUE(staged.usable_for(tensors, device_id));
  EXPECT_EQ(device_id, "from-inner");
  EXPECT_EQ(staged.leader_setup(group_of_two()).value(), (std::vector<uint8_t>{7, 8}));

  RoundReport report;
  ASSERT_TRUE(staged.all_reduce_mean(group_of_two(), tensors, Deadline::never(), report).is_ok());
  ASSERT_EQ(inner->seen.size(), 2u);
  EXPECT_EQ(inner->seen[0].data, a.data());  // no staging copy of host tensors
  EXPECT_EQ(inner->seen[1].data, b.data());
  EXPECT_EQ(inner->rounds, (std::vector<uint64_t>{3}));
  EXPECT_EQ(report.bytes_sent, 1u);

  inner->answer = timeout_error("member 1 did not reply");
  EXPECT_EQ(staged.all_reduce_mean(group_of_two(), tensors, Deadline::never(), report).code(),
            StatusCode::kTimeout);
}

TEST(HostStagedBackend, RefusesWhatNoBackendAverages) {
  HostStagedBackend staged(std::make_shared<RecordingBackend>());
  std::vector<int64_t> integers(4);
  std::vector<TensorRef> tensors = {{integers.data(), integers.size(), quant::DType::kInt64}};
  RoundReport report;
  EXPECT_EQ(staged.all_reduce_mean(group_of_two(), tensors, Deadline::never(), report).code(),
            StatusCode::kInvalidArgument);
}

TEST(HostStagedBackend, CudaTensorsAreRefusedWhereNoDeviceCanStageThem) {
  if (testing::cuda_device_count() > 0)
    GTEST_SKIP() << "a CUDA device is present: host_staged_gpu_test covers CUDA tensors here";
  auto inner = std::make_shared<RecordingBackend>();
  HostStagedBackend staged(inner);
  // A device pointer that no device backs: nothing may dereference it.
  TensorRef on_gpu{reinterpret_cast<void*>(0x1000), 16, quant::DType::kFloat32,
                   transport::MemoryType::kCuda, 0};
  std::vector<TensorRef> tensors = {on_gpu};
  std::string device_id;
  EXPECT_FALSE(staged.usable_for(tensors, device_id));
  RoundReport report;
  Status status = staged.all_reduce_mean(group_of_two(), tensors, Deadline::never(), report);
  EXPECT_FALSE(status.is_ok());
  EXPECT_TRUE(inner->seen.empty()) << "the wrapped backend must not run without staging";
}

}  // namespace
}  // namespace hivemind::averaging
