// The NCCL backend's answers that need no GPU: what the factory says in this build, and the
// tensors and groups the backend refuses before it touches CUDA or NCCL. Runs in every build;
// the rounds themselves are in nccl_gpu_test.cc (label gpu).
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <hivemind/averaging/nccl_backend.h>

namespace hivemind::averaging {
namespace {

#ifdef HIVEMIND_TEST_HAVE_NCCL

// A CUDA "pointer" that is never dereferenced: every check below refuses before any CUDA call.
void* fake_device_pointer() {
  static float storage[4];
  return storage;
}

TensorRef cuda_tensor(int device, quant::DType dtype = quant::DType::kFloat32) {
  TensorRef t;
  t.data = fake_device_pointer();
  t.elements = 4;
  t.dtype = dtype;
  t.memory = transport::MemoryType::kCuda;
  t.device = device;
  return t;
}

Group group_of(std::vector<std::string> device_ids, size_t setup_bytes = 128) {
  Group g;
  g.key = "run42.dense";
  g.round = 1;
  for (size_t i = 0; i < device_ids.size(); ++i)
    g.members.push_back({"tcp://127.0.0.1:" + std::to_string(4000 + i), {"nccl"}, device_ids[i]});
  g.backend = std::string(kNcclBackendName);
  g.backend_setup.assign(setup_bytes, 7);
  return g;
}

TEST(NcclFactory, BuiltInAndReportsTheLibraryVersion) {
  EXPECT_TRUE(nccl_built_in());
  auto version = nccl_version();
  ASSERT_TRUE(version.is_ok()) << version.status().to_string();
  // The library loaded at run time is the one CMake found (same major.minor.patch).
  EXPECT_EQ(*version, HIVEMIND_TEST_NCCL_VERSION);
  EXPECT_TRUE(std::regex_match(*version, std::regex(R"(2\.\d+\.\d+)"))) << *version;

  auto backend = make_nccl_backend();
  ASSERT_TRUE(backend.is_ok()) << backend.status().to_string();
  EXPECT_EQ(backend.value()->name(), "nccl");
}

TEST(NcclFactory, AvailabilityNamesWhatIsMissing) {
  Status here = nccl_available();
  if (!here.is_ok()) {
    EXPECT_EQ(here.code(), StatusCode::kUnavailable);
    EXPECT_NE(here.message().find("no CUDA device"), std::string::npos) << here.message();
  }
}

TEST(NcclBackendRefuses, TensorsItCannotAverage) {
  auto backend = make_nccl_backend().value();
  std::string device_id = "untouched";
  std::vector<float> host(4);

  std::vector<TensorRef> on_host = {{host.data(), host.size(), quant::DType::kFloat32}};
  EXPECT_FALSE(backend->usable_for(on_host, device_id));

  std::vector<TensorRef> none;
  EXPECT_FALSE(backend->usable_for(none, device_id));

  std::vector<TensorRef> two_devices = {cuda_tensor(0), cuda_tensor(1)};
  EXPECT_FALSE(backend->usable_for(two_devices, device_id));

  std::vector<TensorRef> integers = {cuda_tensor(0, quant::DType::kInt32)};
  EXPECT_FALSE(backend->usable_for(integers, device_id));

  std::vector<TensorRef> no_such_device = {cuda_tensor(100000)};
  EXPECT_FALSE(backend->usable_for(no_such_device, device_id));

  EXPECT_EQ(device_id, "untouched") << "a refusal must not claim a device";
}

TEST(NcclBackendRefuses, RoundsThatCannotRunBeforeTouchingTheGpu) {
  auto backend = make_nccl_backend().value();
  std::vector<float> host(4);
  RoundReport report;
  Deadline deadline = Deadline::after(Milliseconds(1000));

  std::vector<TensorRef> on_host = {{host.data(), host.size(), quant::DType::kFloat32}};
  Status s = backend->all_reduce_mean(group_of({"GPU-a"}), on_host, deadline, report);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("host memory"), std::string::npos) << s.message();

  std::vector<TensorRef> on_gpu = {cuda_tensor(0)};
  s = backend->all_reduce_mean(group_of({"GPU-a"}, 16), on_gpu, deadline, report);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("16 bytes"), std::string::npos) << s.message();

  s = backend->all_reduce_mean(group_of({"GPU-a", "GPU-a"}), on_gpu, deadline, report);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("GPU GPU-a is listed by two members"), std::string::npos)
      << s.message();

  s = backend->all_reduce_mean(group_of({"GPU-a", ""}), on_gpu, deadline, report);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("names no GPU"), std::string::npos) << s.message();

  Group outside = group_of({"GPU-a"});
  outside.self = 3;
  s = backend->all_reduce_mean(outside, on_gpu, deadline, report);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);

  EXPECT_EQ(report.bytes_sent, 0u);
  EXPECT_EQ(report.bytes_received, 0u);
}

#else  // built without NCCL

TEST(NcclFactory, SaysBuiltWithoutNccl) {
  EXPECT_FALSE(nccl_built_in());
  for (Status s : {nccl_available(), nccl_version().status(), make_nccl_backend().status()}) {
    EXPECT_EQ(s.code(), StatusCode::kUnsupported);
    EXPECT_NE(s.message().find("built without NCCL"), std::string::npos) << s.message();
  }
}

#endif

}  // namespace
}  // namespace hivemind::averaging
