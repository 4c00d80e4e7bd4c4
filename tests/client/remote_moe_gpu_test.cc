// The MoE layer with its gate and activations on a GPU: the same answers and gradients as on the
// CPU.
#include <gtest/gtest.h>
#include <test_env.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <hivemind/client/remote_moe.h>

#include "fake_swarm.h"

namespace hivemind::client {
namespace {

TEST(RemoteMoEGpu, CudaMatchesCpu) {
  HIVEMIND_REQUIRE_CUDA();
  if (!torch::cuda::is_available()) GTEST_SKIP() << "this LibTorch build has no CUDA support";
  constexpr int64_t kHidden = 8;
  testing::Swarm swarm = testing::make_swarm("expert.", {4, 4}, kHidden, 0.6, 41, /*threads=*/2);
  // The fake experts stay on the CPU and hop devices like a server on another machine would.
  for (auto& [uid, module] : swarm.experts) {
    swarm.caller->add_expert(uid, [m = module](const torch::Tensor& x) mutable {
      return m->forward(x.cpu()).to(x.device());
    });
  }
  const RemoteMixtureOfExpertsOptions o = testing::moe_options(swarm, kHidden, 3);
  RemoteMixtureOfExperts cpu(o, swarm.directory, swarm.caller);
  RemoteMixtureOfExperts gpu(o, swarm.directory, swarm.caller);
  {
    torch::NoGradGuard no_grad;
    gpu->proj->weight.copy_(cpu->proj->weight);
    gpu->proj->bias.copy_(cpu->proj->bias);
  }
  gpu->to(torch::kCUDA);
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({6, kHidden});
  const torch::Tensor cot = torch::randn({6, kHidden});

  torch::Tensor xc = x.clone().requires_grad_(true);
  (cpu->forward(xc) * cot).sum().backward();
  torch::Tensor xg = x.to(torch::kCUDA).requires_grad_(true);
  torch::Tensor out = gpu->forward(xg);
  ASSERT_TRUE(out.is_cuda());
  (out * cot.to(torch::kCUDA)).sum().backward();

  EXPECT_TRUE(torch::allclose(xg.grad().cpu(), xc.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(
      torch::allclose(gpu->proj->weight.grad().cpu(), cpu->proj->weight.grad(), 1e-4, 1e-5));
}

}  // namespace
}  // namespace hivemind::client
