// The server with CUDA experts (label gpu; skips without a device or without a CUDA LibTorch).
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/runtime/pinning.h>
#include <hivemind/runtime/torchscript_expert.h>
#include <hivemind/server/server.h>

#include "server_test_util.h"
#include "test_env.h"
#include "torchscript_files.h"

namespace hivemind::server {
namespace {

using namespace std::chrono_literals;

#define REQUIRE_TORCH_CUDA()                                         \
  do {                                                               \
    HIVEMIND_REQUIRE_CUDA();                                         \
    if (!torch::cuda::is_available())                                \
      GTEST_SKIP() << "LibTorch in this build has no CUDA: skipped"; \
  } while (false)

TEST(ServerGpuTest, CudaExpertsMatchACpuReferenceThroughTheWire) {
  REQUIRE_TORCH_CUDA();
  ::setenv("HIVEMIND_SPIN_US", "0", 1);
  ServerOptions o;
  o.expert_uids = {"gpu.0.0", "gpu.0.1"};
  o.hidden_dim = 64;
  o.device = "cuda";
  o.host = "127.0.0.1";
  o.transport = "tcp";
  o.compression = "block_absmax_u8";  // dequantized on the device
  o.optimizer = "sgd";
  o.lr = 0.05;
  o.stats_report_interval = 0;
  o.declare = [](std::span<const std::string>, const std::string&, DhtTime, Deadline) {
    return Status::ok();
  };
  auto server = Server::create(o).value();
  ASSERT_TRUE(server->start().is_ok());
  EXPECT_TRUE(server->backend("gpu.0.0")->device().is_cuda());
  std::printf("binding: %s\n", server->binding().c_str());

  testing::RawClient client;
  auto reference = runtime::make_expert("ffn", 64, "gpu.0.1", runtime::kDefaultExpertSeed).value();
  torch::Tensor x = torch::randn({8, 64});
  quant::EncodeOptions u8;
  u8.scheme = quant::Scheme::kBlockAbsmaxU8;
  torch::Tensor xq = quant::decode_tensor(quant::encode_tensor(x, u8).value()).value();
  auto y = client.tensors(server->address(), protocol::kForwardMethod, "gpu.0.1", {x},
                          quant::Scheme::kBlockAbsmaxU8);
  ASSERT_TRUE(y.is_ok()) << y.status().to_string();
  torch::NoGradGuard no_grad;
  torch::Tensor expected = reference->forward({xq})[0];
  // GPU GEMMs (TF32 where enabled) and the 8-bit output: compare loosely.
  EXPECT_LT(((*y)[0] - expected).abs().max().item<double>(), 5e-2);

  torch::Tensor g = torch::randn({8, 64});
  auto gx = client.tensors(server->address(), protocol::kBackwardMethod, "gpu.0.1", {x, g});
  ASSERT_TRUE(gx.is_ok()) << gx.status().to_string();
  EXPECT_EQ((*gx)[0].sizes(), x.sizes());
  EXPECT_EQ(server->backend("gpu.0.1")->update_count(), 1);
  ASSERT_TRUE(server->shutdown(20s).is_ok());
}

// A TorchScript expert moved to the GPU by the backend's nn::Module::to(): the jit module computes
// with the moved weights (set_data on the shared TensorImpls), forward and backward, and its step
// lands on the registered parameters.
TEST(ServerGpuTest, TorchScriptExpertsRunOnTheGpu) {
  REQUIRE_TORCH_CUDA();
  ::setenv("HIVEMIND_SPIN_US", "0", 1);
  test_experts::TestTempDir dir;
  const auto file = dir / "ffn.pt";
  ASSERT_TRUE(runtime::save_scripted_ffn(file, 64, 3).is_ok());
  ServerOptions o;
  o.expert_cls = runtime::kTorchScriptExpertClass;
  o.module_path = file.string();
  o.expert_uids = {"ts.0"};
  o.device = "cuda";
  o.host = "127.0.0.1";
  o.transport = "tcp";
  o.compression = "none";
  o.optimizer = "sgd";
  o.lr = 0.05;
  o.stats_report_interval = 0;
  o.declare = [](std::span<const std::string>, const std::string&, DhtTime, Deadline) {
    return Status::ok();
  };
  auto server = Server::create(o).value();
  ASSERT_TRUE(server->start().is_ok());
  EXPECT_TRUE(server->backend("ts.0")->device().is_cuda());
  auto reference = runtime::make_expert(expert_config(o), "ts.0", o.seed).value();
  testing::RawClient client;
  torch::Tensor x = torch::randn({8, 64});
  auto y = client.tensors(server->address(), protocol::kForwardMethod, "ts.0", {x});
  ASSERT_TRUE(y.is_ok()) << y.status().to_string();
  {
    torch::NoGradGuard no_grad;
    // GPU GEMMs (TF32 where enabled): compare loosely.
    EXPECT_LT(((*y)[0] - reference->forward({x})[0]).abs().max().item<double>(), 5e-2);
  }
  auto before = server->backend("ts.0")->parameters();
  auto gx = client.tensors(server->address(), protocol::kBackwardMethod, "ts.0",
                           {x, torch::randn({8, 64})});
  ASSERT_TRUE(gx.is_ok()) << gx.status().to_string();
  EXPECT_EQ((*gx)[0].sizes(), x.sizes());
  auto after = server->backend("ts.0")->parameters();
  EXPECT_FALSE(torch::equal(before[0], after[0]));  // the step reached the jit module's weight
  ASSERT_TRUE(server->shutdown(20s).is_ok());
}

TEST(ServerGpuTest, GpuComputeThreadIsPlacedNextToTheGpu) {
  HIVEMIND_REQUIRE_CUDA();
  auto topology = runtime::Topology::load_system();
  ASSERT_TRUE(topology.is_ok()) << topology.status().to_string();
  auto gpu = runtime::compute_device_from_string("cuda:0").value();
  std::printf("cuda:0 at PCI %s; %s\n", gpu.pci_bus_id.c_str(), topology->summary().c_str());
  EXPECT_FALSE(gpu.pci_bus_id.empty());
  auto plan = runtime::plan_binding(*topology, std::span(&gpu, 1), runtime::PinningOptions{},
                                    runtime::ExistingBinding{})
                  .value();
  std::printf("%s\n", plan.describe(std::span(&gpu, 1)).c_str());
  ASSERT_TRUE(plan.apply);
  EXPECT_NE(plan.device_notes.at(0).find("local to pci"), std::string::npos)
      << plan.device_notes.at(0);
}

}  // namespace
}  // namespace hivemind::server
