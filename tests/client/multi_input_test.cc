// Experts of several inputs (hivemind's forward(input, *args)) through RemoteExpert and both MoE
// layers: every input's rows reach the chosen experts in order, every input gets its gradient, and
// inputs or answers that do not fit are refused with errors that name them.
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/nn.h>
#include <torch/types.h>

#include <hivemind/client/remote_expert.h>
#include <hivemind/client/remote_moe.h>
#include <hivemind/client/switch_moe.h>

#include "fake_swarm.h"
#include "test_env.h"

namespace hivemind::client {
namespace {

using hivemind::testing::expect_throws_with;

using testing::Swarm;

constexpr int64_t kHidden = 8;
constexpr int64_t kContext = 3;

// y = ffn(x) * sigmoid(gate(c)): an expert that needs both of its inputs, x [., kHidden] and the
// per-sample context c [., kContext], and whose output has x's shape.
struct GatedExpert {
  torch::nn::Sequential ffn{nullptr};
  torch::nn::Linear gate{nullptr};

  explicit GatedExpert(uint64_t seed) : ffn(testing::make_ffn(kHidden, seed)) {
    torch::manual_seed(seed + 7);
    gate = torch::nn::Linear(kContext, kHidden);
  }
  // Non-const: LibTorch's module forwards are; the holders are shared handles all the same.
  torch::Tensor operator()(const torch::Tensor& x, const torch::Tensor& c) {
    return ffn->forward(x) * torch::sigmoid(gate->forward(c));
  }
};

// A FakeCaller serving `expert` as "expert.0".
std::shared_ptr<testing::FakeCaller> caller_serving(GatedExpert expert) {
  auto caller = std::make_shared<testing::FakeCaller>();
  caller->add_multi_input_expert("expert.0",
                                 [expert](const std::vector<torch::Tensor>& in) mutable {
                                   return expert(in.at(0), in.at(1));
                                 });
  return caller;
}

// The swarm's live experts, each replaced in its FakeCaller by a GatedExpert.
std::map<std::string, GatedExpert> make_gated(Swarm& swarm) {
  std::map<std::string, GatedExpert> experts;
  uint64_t seed = 100;
  for (const auto& [uid, endpoint] : swarm.directory->live()) {
    GatedExpert expert(seed++);
    experts.emplace(uid, expert);
    swarm.caller->add_multi_input_expert(uid,
                                         [expert](const std::vector<torch::Tensor>& in) mutable {
                                           return expert(in.at(0), in.at(1));
                                         });
  }
  return experts;
}

struct Result2 {
  torch::Tensor out, grad_x, grad_c, grad_gate;
};

// Runs f(x, c), backpropagates `cotangent`, returns the output and the gradients of x, c and the
// layer's gating weight (undefined for RemoteExpert).
template <typename F>
Result2 run(const torch::Tensor& x0, const torch::Tensor& c0, const torch::Tensor& cotangent,
            const torch::Tensor& gate_weight, F f) {
  if (gate_weight.defined() && gate_weight.grad().defined()) gate_weight.mutable_grad().zero_();
  torch::Tensor x = x0.clone().requires_grad_(true);
  torch::Tensor c = c0.clone().requires_grad_(true);
  torch::Tensor out = f(x, c);
  (out * cotangent).sum().backward();
  return {out.detach(), x.grad().clone(), c.grad().clone(),
          gate_weight.defined() ? gate_weight.grad().clone() : torch::Tensor()};
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, const char* what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-5))
      << what << ": max diff " << (a - b).abs().max().item<double>();
}

void expect_same(const Result2& got, const Result2& want) {
  expect_close(got.out, want.out, "output");
  expect_close(got.grad_x, want.grad_x, "gradient of input 0");
  expect_close(got.grad_c, want.grad_c, "gradient of input 1");
  if (want.grad_gate.defined()) expect_close(got.grad_gate, want.grad_gate, "gate gradient");
  EXPECT_GT(got.grad_c.abs().sum().item<double>(), 0) << "no gradient reached input 1";
}

TEST(MultiInputExperts, RemoteExpertSendsEveryInputAndReturnsEveryGradient) {
  GatedExpert local(5);
  auto caller = caller_serving(local);
  RemoteExpert remote(ExpertAddress{"expert.0", "fake://0"}, caller);
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({5, kHidden}), c = torch::randn({5, kContext});
  const torch::Tensor cotangent = torch::randn({5, kHidden});

  const Result2 got =
      run(x, c, cotangent, {}, [&](const torch::Tensor& xi, const torch::Tensor& ci) {
        return remote->forward_all({xi, ci});
      });
  const Result2 want = run(x, c, cotangent, {}, local);
  expect_same(got, want);
  EXPECT_EQ(caller->calls().size(), 2u) << "one forward and one backward request";
}

TEST(MultiInputExperts, MixtureOfExpertsMatchesLocalReference) {
  Swarm swarm = testing::make_swarm("expert.", {4, 4}, kHidden, 0.6, 21, /*threads=*/2);
  auto experts = make_gated(swarm);
  RemoteMixtureOfExperts moe(testing::moe_options(swarm, kHidden, 3), swarm.directory,
                             swarm.caller);
  torch::manual_seed(2);
  const torch::Tensor x = torch::randn({6, kHidden}), c = torch::randn({6, kContext});
  const torch::Tensor cotangent = torch::randn({6, kHidden});

  // hivemind's MoE by hand: gate on x alone, softmax over each sample's chosen experts, each
  // expert applied to that sample's (x, c).
  auto reference = [&](const torch::Tensor& xi, const torch::Tensor& ci) {
    const auto grid = moe->proj->forward(xi).split_with_sizes(swarm.grid, -1);
    const auto chosen = testing::oracle_best_experts(swarm.directory->live(), swarm.prefix,
                                                     swarm.grid, GridScores::from_tensors(grid), 3);
    return testing::reference_mixture(
        grid, chosen,
        [&](int64_t i, const ChosenExpert& e) -> std::optional<torch::Tensor> {
          return experts.at(e.expert.uid)(xi.index({i}).unsqueeze(0),
                                          ci.index({i}).unsqueeze(0))[0];
        },
        torch::Tensor());
  };
  const Result2 got = run(x, c, cotangent, moe->proj->weight,
                          [&](const torch::Tensor& xi, const torch::Tensor& ci) {
                            return moe->forward_all({xi, ci});
                          });
  const Result2 want = run(x, c, cotangent, moe->proj->weight, reference);
  expect_same(got, want);
}

TEST(MultiInputExperts, SwitchLayerGatesAndAddsTheFirstInput) {
  Swarm swarm = testing::make_swarm("sw.", {5}, kHidden, 1.0, 22, /*threads=*/0);
  auto experts = make_gated(swarm);
  RemoteMixtureOfExpertsOptions base;
  base.in_features = kHidden;
  base.grid_size = swarm.grid;
  base.uid_prefix = "sw";
  RemoteSwitchMixtureOfExperts moe(RemoteSwitchMixtureOfExpertsOptions::switch_defaults(base),
                                   swarm.directory, swarm.caller);
  moe->eval();  // no jitter: the reference gates on x itself
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({7, kHidden}), c = torch::randn({7, kContext});
  const torch::Tensor cotangent = torch::randn({7, kHidden});

  // One grid dimension, k_best 1: output = x + softmax(gate(x))[chosen] * expert(x, c).
  auto reference = [&](const torch::Tensor& xi, const torch::Tensor& ci) {
    const torch::Tensor scores = moe->proj->forward(xi);
    const torch::Tensor probs = torch::softmax(scores, -1);
    const auto chosen = testing::oracle_best_experts(
        swarm.directory->live(), swarm.prefix, swarm.grid,
        GridScores::from_tensors(std::vector<torch::Tensor>{scores}), 1);
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < xi.size(0); ++i) {
      const ChosenExpert& e = chosen[i].at(0);
      rows.push_back(xi.index({i}) + probs.index({i, e.coords[0]}) *
                                         experts.at(e.expert.uid)(xi.index({i}).unsqueeze(0),
                                                                  ci.index({i}).unsqueeze(0))[0]);
    }
    return torch::stack(rows);
  };
  const Result2 got = run(x, c, cotangent, moe->proj->weight,
                          [&](const torch::Tensor& xi, const torch::Tensor& ci) {
                            return moe->forward_all({xi, ci}).first;
                          });
  const Result2 want = run(x, c, cotangent, moe->proj->weight, reference);
  expect_same(got, want);
}

TEST(MultiInputExperts, InputsThatDoNotFitTheBatchAreRefusedByName) {
  Swarm swarm = testing::make_swarm("expert.", {4, 4}, kHidden, 1.0, 23, 0);
  make_gated(swarm);
  RemoteMixtureOfExperts moe(testing::moe_options(swarm, kHidden, 2), swarm.directory,
                             swarm.caller);
  RemoteExpert remote(ExpertAddress{"expert.0.0", "fake://0"}, swarm.caller);
  const torch::Tensor x = torch::randn({6, kHidden});

  expect_throws_with(
      [&] {
        moe->forward_all({x, torch::randn({5, kContext})});
      },
      "input 1 has batch size 5, the routing has 6 samples");
  expect_throws_with(
      [&] {
        remote->forward_all({x, torch::randn({7, kContext})});
      },
      "input 1 has batch size 7, the routing has 6 samples");
  expect_throws_with([&] { moe->forward_all({x, torch::tensor(1.0)}); }, "input 1 is a scalar");
  expect_throws_with([&] { moe->forward_all({x, torch::Tensor()}); }, "input 1 is undefined");
  expect_throws_with([&] { moe->forward_all({}); }, "RemoteMixtureOfExperts: no input");
  expect_throws_with([&] { remote->forward_all({}); }, "no input");
  EXPECT_TRUE(swarm.caller->calls().empty()) << "nothing is sent for inputs that do not fit";
}

// Answers forward like `expert` and backward with the gradient of the first input only: a server
// that forgot one.
class OneGradientCaller final : public ExpertCaller {
 public:
  explicit OneGradientCaller(GatedExpert expert) : expert_(std::move(expert)) {}
  void forward(const ExpertAddress&, std::vector<torch::Tensor> inputs, Deadline,
               ExpertCallback done) override {
    torch::NoGradGuard no_grad;
    done(std::vector<torch::Tensor>{expert_(inputs[0], inputs[1])});
  }
  void backward(const ExpertAddress&, std::vector<torch::Tensor> inputs, std::vector<torch::Tensor>,
                Deadline, ExpertCallback done) override {
    done(std::vector<torch::Tensor>{torch::zeros_like(inputs[0])});
  }

 private:
  GatedExpert expert_;
};

TEST(MultiInputExperts, AnAnswerWithoutEveryInputsGradientIsAFailure) {
  RemoteExpert remote(ExpertAddress{"expert.0", "fake://0"},
                      std::make_shared<OneGradientCaller>(GatedExpert(9)));
  const torch::Tensor x = torch::randn({4, kHidden}).requires_grad_(true);
  const torch::Tensor c = torch::randn({4, kContext}).requires_grad_(true);
  torch::Tensor out = remote->forward_all({x, c});
  ASSERT_EQ(out.sizes(), x.sizes());
  expect_throws_with([&] { out.sum().backward(); }, "returned 1 input gradients, expected 2");
}

TEST(MultiInputExperts, AnInputThatNeedsNoGradientStillReachesTheExpert) {
  GatedExpert local(6);
  RemoteExpert remote(ExpertAddress{"expert.0", "fake://0"}, caller_serving(local));
  const torch::Tensor x = torch::randn({3, kHidden}).requires_grad_(true);
  const torch::Tensor c = torch::randn({3, kContext});  // data, not a parameter's function
  remote->forward_all({x, c}).sum().backward();
  torch::Tensor xl = x.detach().clone().requires_grad_(true);
  local(xl, c).sum().backward();
  expect_close(x.grad(), xl.grad(), "gradient of input 0");
  EXPECT_FALSE(c.grad().defined());
}

}  // namespace
}  // namespace hivemind::client
