// NCCL rounds on real GPUs (label gpu; skipped with a printed reason where no CUDA device exists):
// a one-member communicator round, the abort path driven by a deadline (a member that never shows
// up), and, where two GPUs exist, the exact mean and a stalled member's round aborted and
// re-formed.
#include <cstring>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <test_env.h>

#include <hivemind/averaging/nccl_backend.h>

namespace hivemind::averaging {
namespace {

// A float32 tensor on `device`, filled from `values`.
class DeviceTensor {
 public:
  DeviceTensor(int device, const std::vector<float>& values) : device_(device), n_(values.size()) {
    EXPECT_EQ(cudaSetDevice(device), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&data_, n_ * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data_, values.data(), n_ * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceTensor() {
    cudaSetDevice(device_);
    cudaFree(data_);
  }
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;

  TensorRef ref() const {
    TensorRef t;
    t.data = data_;
    t.elements = n_;
    t.dtype = quant::DType::kFloat32;
    t.memory = transport::MemoryType::kCuda;
    t.device = device_;
    return t;
  }
  std::vector<float> read() const {
    std::vector<float> out(n_);
    cudaSetDevice(device_);
    EXPECT_EQ(cudaMemcpy(out.data(), data_, n_ * sizeof(float), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return out;
  }

 private:
  int device_;
  size_t n_;
  void* data_ = nullptr;
};

std::vector<float> ramp(size_t n, float start) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = start + 0.25f * static_cast<float>(i % 1000);
  return v;
}

std::string device_id_of(Backend& backend, const TensorRef& t) {
  std::string id;
  std::vector<TensorRef> one = {t};
  EXPECT_TRUE(backend.usable_for(one, id));
  EXPECT_EQ(id.rfind("GPU-", 0), 0u) << id;
  return id;
}

Group group_for(const std::string& key, std::vector<std::string> device_ids, size_t self) {
  Group g;
  g.key = key;
  g.round = 1;
  for (size_t i = 0; i < device_ids.size(); ++i)
    g.members.push_back({"tcp://127.0.0.1:" + std::to_string(5000 + i), {"nccl"}, device_ids[i]});
  g.self = self;
  g.backend = std::string(kNcclBackendName);
  return g;
}

TEST(NcclGpu, OneMemberRoundKeepsTheTensorsAndReusesItsCommunicator) {
  HIVEMIND_REQUIRE_CUDA();
  auto backend = make_nccl_backend().value();
  std::vector<float> a_values = ramp(1 << 20, -3.0f), b_values = ramp(1001, 7.5f);
  DeviceTensor a(0, a_values), b(0, b_values);
  std::vector<TensorRef> tensors = {a.ref(), b.ref()};

  Group group = group_for("gpu.one", {device_id_of(*backend, a.ref())}, 0);
  auto setup = backend->leader_setup(group);
  ASSERT_TRUE(setup.is_ok()) << setup.status().to_string();
  group.backend_setup = setup.value();
  RoundReport report;
  Status s = backend->all_reduce_mean(group, tensors, Deadline::after(Milliseconds(60000)), report);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(a.read(), a_values);  // the mean of one member is its own tensor, bit for bit
  EXPECT_EQ(b.read(), b_values);
  EXPECT_EQ(report.bytes_sent, 0u);  // a one-member ring moves nothing

  // Same membership: the leader hands out the communicator it already holds.
  auto again = backend->leader_setup(group);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again.value(), group.backend_setup);
  group.round = 2;
  s = backend->all_reduce_mean(group, tensors, Deadline::after(Milliseconds(60000)), report);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(a.read(), a_values);
}

TEST(NcclGpu, AMemberThatNeverShowsEndsTheRoundAtItsDeadlineAndTheNextRoundWorks) {
  HIVEMIND_REQUIRE_CUDA();
  auto backend = make_nccl_backend().value();
  std::vector<float> values = ramp(4096, 1.0f);
  DeviceTensor t(0, values);
  std::vector<TensorRef> tensors = {t.ref()};
  std::string self_id = device_id_of(*backend, t.ref());

  // Member 1 is another process's GPU that never calls in: NCCL's bootstrap waits for it.
  Group pair = group_for("gpu.abort", {self_id, "GPU-00000000-0000-0000-0000-000000000001"}, 0);
  pair.backend_setup = backend->leader_setup(pair).value();
  RoundReport report;
  Status failed =
      backend->all_reduce_mean(pair, tensors, Deadline::after(Milliseconds(3000)), report);
  EXPECT_EQ(failed.code(), StatusCode::kTimeout) << failed.to_string();
  EXPECT_NE(failed.message().find("deadline"), std::string::npos) << failed.message();
  EXPECT_EQ(t.read(), values) << "a failed round must leave the tensors as they were";

  // The group re-forms without the missing member: a new id, a new communicator, a good round.
  Group alone = group_for("gpu.abort", {self_id}, 0);
  alone.backend_setup = backend->leader_setup(alone).value();
  EXPECT_NE(alone.backend_setup, pair.backend_setup);
  Status ok =
      backend->all_reduce_mean(alone, tensors, Deadline::after(Milliseconds(60000)), report);
  ASSERT_TRUE(ok.is_ok()) << ok.to_string();
  EXPECT_EQ(t.read(), values);
}

// Two members in one process, one thread and one GPU each (NCCL supports that arrangement).
struct TwoGpuMembers {
  std::shared_ptr<Backend> backends[2] = {make_nccl_backend().value(), make_nccl_backend().value()};
  std::vector<float> values[2] = {ramp(3 << 20, 1.0f), ramp(3 << 20, -5.5f)};
  std::unique_ptr<DeviceTensor> tensors[2] = {std::make_unique<DeviceTensor>(0, values[0]),
                                              std::make_unique<DeviceTensor>(1, values[1])};

  Group group(size_t self) {
    return group_for("gpu.two",
                     {device_id_of(*backends[0], tensors[0]->ref()),
                      device_id_of(*backends[1], tensors[1]->ref())},
                     self);
  }
  // Runs one round on the members listed in `who` (the others stay away); returns each status.
  std::vector<Status> round(const std::vector<size_t>& who, Milliseconds timeout) {
    std::vector<uint8_t> setup = backends[0]->leader_setup(group(0)).value();
    std::vector<Status> results(2, Status::ok());
    std::vector<std::thread> threads;
    for (size_t m : who) {
      threads.emplace_back([&, m] {
        Group g = group(m);
        g.backend_setup = setup;
        std::vector<TensorRef> refs = {tensors[m]->ref()};
        RoundReport report;
        results[m] = backends[m]->all_reduce_mean(g, refs, Deadline::after(timeout), report);
      });
    }
    for (auto& thread : threads)
      thread.join();
    return results;
  }
};

TEST(NcclGpu, TwoGpusAverageExactlyAndAStalledMemberIsAbortedThenRejoins) {
  HIVEMIND_REQUIRE_CUDA();
  if (testing::cuda_device_count() < 2) GTEST_SKIP() << "needs two CUDA devices: test skipped";
  TwoGpuMembers members;
  std::vector<float> mean(members.values[0].size());
  for (size_t i = 0; i < mean.size(); ++i)
    mean[i] = (members.values[0][i] + members.values[1][i]) / 2;

  auto first = members.round({0, 1}, Milliseconds(60000));
  ASSERT_TRUE(first[0].is_ok()) << first[0].to_string();
  ASSERT_TRUE(first[1].is_ok()) << first[1].to_string();
  std::vector<float> after[2] = {members.tensors[0]->read(), members.tensors[1]->read()};
  for (size_t i = 0; i < mean.size(); ++i) {
    ASSERT_FLOAT_EQ(after[0][i], mean[i]) << "element " << i;
    ASSERT_FLOAT_EQ(after[1][i], mean[i]) << "element " << i;
  }

  // Member 1 stalls: member 0's all-reduce on the cached communicator must end at its deadline.
  auto stalled = members.round({0}, Milliseconds(3000));
  EXPECT_EQ(stalled[0].code(), StatusCode::kTimeout) << stalled[0].to_string();
  EXPECT_EQ(members.tensors[0]->read(), after[0]);

  // The next round re-forms the communicator on both sides (member 1's stale one is replaced).
  auto third = members.round({0, 1}, Milliseconds(60000));
  EXPECT_TRUE(third[0].is_ok()) << third[0].to_string();
  EXPECT_TRUE(third[1].is_ok()) << third[1].to_string();
}

}  // namespace
}  // namespace hivemind::averaging
