#include <set>

#include <gtest/gtest.h>
#include <torch/utils.h>

#include <hivemind/client/switch_moe.h>

#include "fake_swarm.h"

namespace hivemind::client {
namespace {

using testing::Behavior;
using testing::Swarm;

constexpr int64_t kHidden = 6;

struct SwitchFixture {
  Swarm swarm;
  RemoteSwitchMixtureOfExperts moe{nullptr};
  torch::Tensor x;

  SwitchFixture(std::vector<int64_t> grid, double density, uint32_t seed, int threads = 0,
                double grid_dropout = 1.0, double jitter_eps = 1e-2) {
    swarm = testing::make_swarm("sw.", grid, kHidden, density, seed, threads);
    RemoteMixtureOfExpertsOptions base;
    base.in_features = kHidden;
    base.grid_size = grid;
    base.uid_prefix = "sw";
    auto o = RemoteSwitchMixtureOfExpertsOptions::switch_defaults(base);
    o.grid_dropout = grid_dropout;
    o.jitter_eps = jitter_eps;
    moe = RemoteSwitchMixtureOfExperts(o, swarm.directory, swarm.caller);
    torch::manual_seed(seed);
    x = torch::randn({8, kHidden});
  }

  // hivemind's Switch computed locally; `utilization` is what the loss multiplies with.
  std::pair<torch::Tensor, torch::Tensor> reference(const torch::Tensor& in,
                                                    const torch::Tensor& utilization,
                                                    const std::set<std::string>& dead = {}) {
    const auto grid = moe->proj->forward(in).split_with_sizes(swarm.grid, -1);
    std::vector<torch::Tensor> soft;
    for (const auto& g : grid)
      soft.push_back(torch::softmax(g, -1));
    const auto chosen = testing::oracle_best_experts(swarm.directory->live(), swarm.prefix,
                                                     swarm.grid, GridScores::from_tensors(grid), 1);
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < in.size(0); ++i) {
      torch::Tensor row = in.index({i});
      for (const ChosenExpert& e : chosen[i]) {
        if (dead.count(e.expert.uid)) continue;
        torch::Tensor p = soft[0].index({i, e.coords[0]});
        for (size_t d = 1; d < soft.size(); ++d)
          p = p * soft[d].index({i, e.coords[d]});
        torch::nn::Sequential expert = swarm.experts.at(e.expert.uid);
        row = row + p * expert->forward(in.index({i}).unsqueeze(0))[0];
      }
      rows.push_back(row);
    }
    const auto util = utilization.split_with_sizes(swarm.grid, 0);
    torch::Tensor loss = torch::zeros({});
    for (size_t d = 0; d < soft.size(); ++d) {
      const double g = static_cast<double>(swarm.grid[d]);
      loss = loss + (soft[d].mean(0) * util[d]).mean() * (g * g);
    }
    return {torch::stack(rows), loss};
  }
};

void expect_close(const torch::Tensor& a, const torch::Tensor& b, const char* what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-5))
      << what << ": max diff " << (a - b).abs().max().item<double>();
}

TEST(SwitchMoE, EvalForwardAndBackwardMatchReference) {
  SwitchFixture f({4, 3}, 0.7, 31, /*threads=*/2);
  f.moe->eval();
  const torch::Tensor before = f.moe->grid_utilization.clone();
  torch::manual_seed(5);
  const torch::Tensor cot = torch::randn(f.x.sizes());

  torch::Tensor x1 = f.x.clone().requires_grad_(true);
  auto [out, loss] = f.moe->forward(x1);
  ((out * cot).sum() + loss).backward();
  const torch::Tensor gw = f.moe->proj->weight.grad().clone(), gx = x1.grad().clone();
  EXPECT_TRUE(torch::equal(f.moe->grid_utilization, before)) << "eval mode must not move the EMA";

  f.moe->zero_grad();
  torch::Tensor x2 = f.x.clone().requires_grad_(true);
  auto [ref_out, ref_loss] = f.reference(x2, before);
  ((ref_out * cot).sum() + ref_loss).backward();
  expect_close(out.detach(), ref_out.detach(), "output");
  expect_close(loss.detach(), ref_loss.detach(), "balancing loss");
  expect_close(gx, x2.grad(), "input gradient");
  expect_close(gw, f.moe->proj->weight.grad(), "gate gradient");
  EXPECT_GT(gw.abs().sum().item<double>(), 0);
}

TEST(SwitchMoE, TrainingUpdatesUtilizationEma) {
  SwitchFixture f({4, 3}, 0.7, 32, 0, /*grid_dropout=*/1.0, /*jitter_eps=*/0.0);
  f.moe->train();
  const torch::Tensor before = f.moe->grid_utilization.clone();
  EXPECT_TRUE(torch::allclose(before.slice(0, 0, 4), torch::full({4}, 0.25)));
  auto [out, loss] = f.moe->forward(f.x);

  // Expected: alpha * old + (1 - alpha) * fraction of answered routings per index.
  const auto& routing = f.moe->last_routing();
  std::vector<torch::Tensor> fractions;
  for (size_t d = 0; d < f.swarm.grid.size(); ++d) {
    torch::Tensor counts = torch::zeros({f.swarm.grid[d]});
    for (size_t i = 0; i < routing.chosen.size(); ++i) {
      for (size_t j = 0; j < routing.chosen[i].size(); ++j) {
        if (routing.mask[i][j].item<bool>()) counts[routing.chosen[i][j].coords[d]] += 1;
      }
    }
    fractions.push_back(counts / counts.sum());
  }
  const torch::Tensor expected = 0.9 * before + 0.1 * torch::cat(fractions);
  expect_close(f.moe->grid_utilization, expected, "utilization");
  auto [ref_out, ref_loss] = f.reference(f.x, expected);
  expect_close(out.detach(), ref_out.detach(), "output");
  expect_close(loss.detach(), ref_loss.detach(), "balancing loss");

  f.moe->zero_grad();
  loss.backward();
  EXPECT_GT(f.moe->proj->weight.grad().abs().sum().item<double>(), 0)
      << "the balancing loss must train the gate";
}

TEST(SwitchMoE, FailedExpertLeavesTheResidual) {
  SwitchFixture f({3, 3}, 0.8, 33);
  f.moe->eval();
  for (const auto& [uid, endpoint] : f.swarm.directory->live())
    f.swarm.caller->set_forward(uid, Behavior::kFail);
  auto [out, loss] = f.moe->forward(f.x);
  expect_close(out, f.x, "output without experts");  // allow_zero_outputs, k_min 0 by default
  EXPECT_TRUE(loss.isfinite().item<bool>());
}

TEST(SwitchMoE, OneFailingExpertIsMasked) {
  SwitchFixture f({3, 3}, 0.8, 34);
  f.moe->eval();
  auto [out0, loss0] = f.moe->forward(f.x);
  const std::string dead = f.moe->last_routing().chosen[0][0].expert.uid;
  f.swarm.caller->set_forward(dead, Behavior::kFail);
  auto [out, loss] = f.moe->forward(f.x);
  auto [ref, ref_loss] = f.reference(f.x, f.moe->grid_utilization, {dead});
  expect_close(out, ref.detach(), "output");
  expect_close(out.index({0}), f.x.index({0}), "sample 0 keeps only its residual");
}

TEST(SwitchMoE, JitterAndGridDropoutTrain) {
  SwitchFixture f({4, 4}, 0.6, 35, 2, /*grid_dropout=*/0.5, /*jitter_eps=*/0.05);
  f.moe->train();
  torch::manual_seed(99);
  const torch::Tensor x_before = f.x.clone();
  torch::Tensor x = f.x.clone().requires_grad_(true);
  for (int step = 0; step < 3; ++step) {
    f.moe->zero_grad();
    auto [out, loss] = f.moe->forward(x);
    ASSERT_TRUE(out.isfinite().all().item<bool>());
    ASSERT_TRUE(loss.isfinite().item<bool>());
    (out.pow(2).mean() + 0.01 * loss).backward();
    EXPECT_TRUE(f.moe->proj->weight.grad().isfinite().all().item<bool>());
  }
  EXPECT_TRUE(torch::equal(f.x, x_before)) << "the caller's input must not be modified";
}

}  // namespace
}  // namespace hivemind::client
