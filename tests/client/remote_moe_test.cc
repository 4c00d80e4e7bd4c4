#include <set>

#include <gtest/gtest.h>
#include <torch/utils.h>

#include <hivemind/client/remote_moe.h>
#include <hivemind/common/wait_interrupt.h>

#include "fake_swarm.h"

namespace hivemind::client {
namespace {

using testing::Behavior;
using testing::Swarm;

// The same MoE computed locally, per sample, with autograd through the very same expert modules.
// Experts in dead_forward are left out of the softmax; those in dead_backward contribute their
// output but no input gradient (hivemind treats them as constants).
torch::Tensor reference_moe(torch::nn::Linear proj, const Swarm& swarm, const torch::Tensor& x,
                            int64_t k, const std::set<std::string>& dead_forward = {},
                            const std::set<std::string>& dead_backward = {}) {
  const std::vector<torch::Tensor> grid =
      proj->forward(testing::gating_input(x)).split_with_sizes(swarm.grid, -1);
  const auto chosen = testing::oracle_best_experts(swarm.directory->live(), swarm.prefix,
                                                   swarm.grid, GridScores::from_tensors(grid), k);
  return testing::reference_mixture(
      grid, chosen,
      [&](int64_t i, const ChosenExpert& e) -> std::optional<torch::Tensor> {
        if (dead_forward.count(e.expert.uid)) return std::nullopt;
        torch::Tensor xi = x.index({i}).unsqueeze(0);
        if (dead_backward.count(e.expert.uid)) xi = xi.detach();
        torch::nn::Sequential expert = swarm.experts.at(e.expert.uid);
        return expert->forward(xi)[0];
      },
      torch::zeros_like(x.index({0})));
}

struct Grads {
  torch::Tensor out, x, weight, bias;
};

// Runs f(x) -> out, backpropagates a fixed random cotangent, and returns the gradients.
template <typename F>
Grads run_with_grads(RemoteMixtureOfExperts& moe, const torch::Tensor& x0,
                     const torch::Tensor& cotangent, F f) {
  moe->zero_grad();
  torch::Tensor x = x0.clone().requires_grad_(true);
  torch::Tensor out = f(x);
  (out * cotangent).sum().backward();
  auto grad_or_zero = [](const torch::Tensor& p) {
    return p.grad().defined() ? p.grad().clone() : torch::zeros_like(p);
  };
  return {out.detach(), x.grad().clone(), grad_or_zero(moe->proj->weight),
          grad_or_zero(moe->proj->bias)};
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, const char* what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-5))
      << what << ": max diff " << (a - b).abs().max().item<double>();
}

struct Fixture {
  static constexpr int64_t kHidden = 8;
  Swarm swarm;
  RemoteMixtureOfExperts moe{nullptr};
  torch::Tensor x, cotangent;

  Fixture(std::vector<int64_t> grid, double density, int64_t k_best, int threads, uint32_t seed,
          std::vector<int64_t> x_shape = {6, kHidden}) {
    swarm = testing::make_swarm("expert.", grid, kHidden, density, seed, threads);
    auto o = testing::moe_options(swarm, kHidden, k_best);
    o.forward_timeout = o.backward_timeout = Milliseconds{60'000};
    moe = RemoteMixtureOfExperts(o, swarm.directory, swarm.caller);
    torch::manual_seed(seed);
    x = torch::randn(x_shape);
    cotangent = torch::randn(x_shape);
  }
  void rebuild(RemoteMixtureOfExpertsOptions o) {
    RemoteMixtureOfExperts fresh(std::move(o), swarm.directory, swarm.caller);
    torch::NoGradGuard no_grad;
    fresh->proj->weight.copy_(moe->proj->weight);
    fresh->proj->bias.copy_(moe->proj->bias);
    moe = fresh;
  }
  Grads remote() {
    return run_with_grads(moe, x, cotangent,
                          [&](const torch::Tensor& in) { return moe->forward(in); });
  }
  Grads reference(const std::set<std::string>& dead_forward = {},
                  const std::set<std::string>& dead_backward = {}) {
    return run_with_grads(moe, x, cotangent, [&](const torch::Tensor& in) {
      return reference_moe(moe->proj, swarm, in, moe->options().k_best, dead_forward,
                           dead_backward);
    });
  }
  // An expert chosen by at least one sample (the best of sample 0).
  std::string some_chosen_expert() {
    torch::NoGradGuard no_grad;
    const auto grid = moe->proj->forward(testing::gating_input(x)).split_with_sizes(swarm.grid, -1);
    auto chosen =
        testing::oracle_best_experts(swarm.directory->live(), swarm.prefix, swarm.grid,
                                     GridScores::from_tensors(grid), moe->options().k_best);
    return chosen.at(0).at(0).expert.uid;
  }
};

void expect_equal(const Grads& got, const Grads& want) {
  expect_close(got.out, want.out, "output");
  expect_close(got.x, want.x, "input gradient");
  expect_close(got.weight, want.weight, "gate weight gradient");
  expect_close(got.bias, want.bias, "gate bias gradient");
}

TEST(RemoteMoE, MatchesLocalReference) {
  Fixture f({4, 4}, 0.6, 3, /*threads=*/0, 11);
  const Grads got = f.remote();
  expect_equal(got, f.reference());
  EXPECT_GT(got.weight.abs().sum().item<double>(), 0) << "no gradient reached the gate";
  EXPECT_GT(got.x.abs().sum().item<double>(), 0);
}

TEST(RemoteMoE, MatchesLocalReferenceOnThreadPool3D) {
  Fixture f({3, 3, 3}, 0.5, 4, /*threads=*/2, 12);
  expect_equal(f.remote(), f.reference());
}

TEST(RemoteMoE, SequenceInputsAreAveragedForGating) {
  Fixture f({5, 3}, 0.7, 2, /*threads=*/2, 13, {4, 3, Fixture::kHidden});
  const Grads got = f.remote();
  ASSERT_EQ(got.out.sizes(), f.x.sizes());
  expect_equal(got, f.reference());
}

TEST(RemoteMoE, ExpertsGetTheirBackwardEvenWhenTheInputNeedsNoGradient) {
  // hivemind's DUMMY rule: a remote layer fed raw data (the model's first layer) still sends the
  // backward, so the experts' optimizers step.
  Fixture f({4, 4}, 0.6, 3, 0, 15);
  ASSERT_FALSE(f.x.requires_grad());
  torch::Tensor out = f.moe->forward(f.x);
  ASSERT_TRUE(out.requires_grad());
  out.backward(f.cotangent);
  int64_t forward_calls = 0, backward_calls = 0;
  for (const auto& c : f.swarm.caller->calls())
    (c.backward ? backward_calls : forward_calls) += 1;
  EXPECT_GT(forward_calls, 0);
  EXPECT_EQ(backward_calls, forward_calls);
  EXPECT_FALSE(f.x.grad().defined());
}

TEST(RemoteMoE, OneRequestPerExpert) {
  Fixture f({4, 4}, 0.6, 3, 0, 14);
  f.remote();
  std::map<std::string, int64_t> forward_rows, backward_rows;
  int64_t forward_calls = 0, backward_calls = 0;
  for (const auto& c : f.swarm.caller->calls()) {
    if (c.backward) {
      ++backward_calls;
      backward_rows[c.uid] += c.batch;
    } else {
      ++forward_calls;
      forward_rows[c.uid] += c.batch;
    }
  }
  std::map<std::string, int64_t> routed;
  int64_t pairs = 0;
  for (const auto& sample : f.moe->last_routing().chosen) {
    for (const auto& e : sample) {
      ++routed[e.expert.uid];
      ++pairs;
    }
  }
  EXPECT_EQ(forward_calls, static_cast<int64_t>(routed.size()));
  EXPECT_EQ(backward_calls, static_cast<int64_t>(routed.size()));
  EXPECT_EQ(forward_rows, routed);
  EXPECT_EQ(backward_rows, routed);
  EXPECT_EQ(pairs, f.x.size(0) * 3);
  EXPECT_LT(forward_calls, pairs);  // hivemind would have sent `pairs` requests
}

TEST(RemoteMoE, FailingExpertIsMasked) {
  Fixture f({4, 4}, 0.6, 3, 2, 15);
  const std::string dead = f.some_chosen_expert();
  f.swarm.caller->set_forward(dead, Behavior::kFail);
  const Grads got = f.remote();
  expect_equal(got, f.reference({dead}));
  const auto& routing = f.moe->last_routing();
  EXPECT_EQ(routing.chosen[0][0].expert.uid, dead);
  EXPECT_FALSE(routing.mask[0][0].item<bool>());
  for (const auto& c : f.swarm.caller->calls())
    EXPECT_FALSE(c.backward && c.uid == dead);
}

TEST(RemoteMoE, WrongShapeOrNanAnswerIsMasked) {
  Fixture f({4, 4}, 0.6, 3, 0, 16);
  const std::string bad = f.some_chosen_expert();
  f.swarm.caller->set_forward(bad, Behavior::kWrongShape);
  expect_equal(f.remote(), f.reference({bad}));

  f.swarm.caller->set_forward(bad, Behavior::kNaN);
  EXPECT_TRUE(f.remote().out.isnan().any().item<bool>())
      << "without detect_anomalies NaN passes through";
  auto o = f.moe->options();
  o.detect_anomalies = true;
  f.rebuild(o);
  expect_equal(f.remote(), f.reference({bad}));
}

TEST(RemoteMoE, DetectAnomaliesRejectsNanInput) {
  Fixture f({4, 4}, 0.6, 3, 0, 17);
  auto o = f.moe->options();
  o.detect_anomalies = true;
  f.rebuild(o);
  f.x[2][3] = std::numeric_limits<float>::infinity();
  try {
    f.moe->forward(f.x);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("NaN or Inf"), std::string::npos) << e.what();
  }
}

TEST(RemoteMoE, HangingExpertIsCutOffAfterKMin) {
  Fixture f({4, 4}, 0.6, 3, 2, 18);
  const std::string hung = f.some_chosen_expert();
  auto o = f.moe->options();
  o.forward_timeout = Milliseconds{60'000};  // the ctest timeout would catch a wait this long
  o.timeout_after_k_min = Milliseconds{20};
  f.rebuild(o);
  f.swarm.caller->set_forward(hung, Behavior::kHold);
  const Grads got = f.remote();
  expect_equal(got, f.reference({hung}));
  // The late answer arrives after the layer moved on: ignored, nothing breaks.
  f.swarm.caller->release_held();
  f.swarm.caller->set_forward(hung, Behavior::kAnswer);
  expect_equal(f.remote(), f.reference());
}

TEST(RemoteMoE, HangingExpertIsCutOffAtForwardTimeout) {
  Fixture f({4, 4}, 0.6, 3, 0, 19);
  const std::string hung = f.some_chosen_expert();
  auto o = f.moe->options();
  o.forward_timeout = Milliseconds{50};
  o.timeout_after_k_min = std::nullopt;  // wait for everyone, up to forward_timeout
  f.rebuild(o);
  f.swarm.caller->set_forward(hung, Behavior::kHold);
  expect_equal(f.remote(), f.reference({hung}));
}

TEST(RemoteMoE, WaitInterruptHookAbandonsAHangingCall) {
  // What Ctrl-C does in Python: the hook throws at its first poll, long before the hour-long
  // deadline, and the exception reaches the caller.
  struct Interrupted {};
  Fixture f({4, 4}, 0.6, 3, 0, 21);
  const std::string hung = f.some_chosen_expert();
  auto o = f.moe->options();
  o.forward_timeout = std::chrono::hours(1);
  o.timeout_after_k_min = std::nullopt;
  f.rebuild(o);
  f.swarm.caller->set_forward(hung, Behavior::kHold);
  int polls = 0;
  set_wait_interrupt_hook([&polls] {
    ++polls;
    throw Interrupted{};
  });
  EXPECT_THROW(f.moe->forward(f.x), Interrupted);
  set_wait_interrupt_hook({});
  EXPECT_EQ(polls, 1);
  f.swarm.caller->release_held();  // the late answer lands in the abandoned call's inbox
}

TEST(RemoteMoE, ShortfallErrorCarriesTheFailuresCode) {
  Fixture f({4, 4}, 0.6, 3, 0, 22);
  for (const auto& [uid, endpoint] : f.swarm.directory->live())
    f.swarm.caller->set_forward(uid, Behavior::kFail);
  try {
    f.moe->forward(f.x);
    FAIL() << "expected an error";
  } catch (const StatusError& e) {
    EXPECT_NE(e.code(), StatusCode::kTimeout) << e.what();  // failed outright, not late
  }
}

TEST(RemoteMoE, KMinNotReachedThrows) {
  Fixture f({4, 4}, 0.6, 3, 0, 20);
  for (const auto& [uid, endpoint] : f.swarm.directory->live())
    f.swarm.caller->set_forward(uid, Behavior::kFail);
  try {
    f.moe->forward(f.x);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("k_min"), std::string::npos) << msg;
    EXPECT_NE(msg.find("injected forward failure"), std::string::npos) << msg;
    EXPECT_NE(msg.find("expert."), std::string::npos) << msg;
  }
}

TEST(RemoteMoE, KMinCountsPerSample) {
  Fixture f({4, 4}, 0.6, 3, 0, 21);
  auto o = f.moe->options();
  o.k_min = 3;
  f.rebuild(o);
  EXPECT_NO_THROW(f.moe->forward(f.x));
  f.swarm.caller->set_forward(f.some_chosen_expert(), Behavior::kFail);
  EXPECT_THROW(f.moe->forward(f.x), std::runtime_error);
}

TEST(RemoteMoE, AllowZeroOutputs) {
  Fixture f({4, 4}, 0.6, 3, 0, 22);
  auto o = f.moe->options();
  o.allow_zero_outputs = true;
  f.rebuild(o);
  for (const auto& [uid, endpoint] : f.swarm.directory->live())
    f.swarm.caller->set_forward(uid, Behavior::kFail);
  const Grads got = f.remote();
  EXPECT_TRUE(got.out.eq(0).all().item<bool>());
  EXPECT_TRUE(got.x.eq(0).all().item<bool>());
  EXPECT_TRUE(got.weight.eq(0).all().item<bool>());
  EXPECT_FALSE(got.out.isnan().any().item<bool>());
}

// A swarm of one expert routes the whole batch to it: the path without gather and scatter.
TEST(RemoteMoE, WholeBatchToOneExpertMatchesLocalReference) {
  Fixture f({1, 1}, 1.0, 1, 0, 31);
  ASSERT_EQ(f.swarm.directory->live().size(), 1u);
  expect_equal(f.remote(), f.reference());
}

TEST(RemoteMoE, WholeBatchToOneFailingExpertFollowsTheKMinRules) {
  Fixture f({1, 1}, 1.0, 1, 0, 32);
  const std::string only = f.some_chosen_expert();
  f.swarm.caller->set_forward(only, Behavior::kFail);
  EXPECT_THROW(f.moe->forward(f.x), std::runtime_error);
  auto o = f.moe->options();
  o.allow_zero_outputs = true;
  f.rebuild(o);
  const Grads got = f.remote();
  EXPECT_TRUE(got.out.eq(0).all().item<bool>());
  EXPECT_TRUE(got.x.eq(0).all().item<bool>());

  f.swarm.caller->set_forward(only, Behavior::kAnswer);
  f.swarm.caller->set_backward(only, Behavior::kFail);
  expect_equal(f.remote(), f.reference({}, {only}));
}

TEST(RemoteMoE, EmptySwarm) {
  Fixture f({4, 4}, 0.0, 2, 0, 23);
  EXPECT_THROW(f.moe->forward(f.x), std::runtime_error);
  auto o = f.moe->options();
  o.allow_zero_outputs = true;
  f.rebuild(o);
  EXPECT_TRUE(f.moe->forward(f.x).eq(0).all().item<bool>());
}

TEST(RemoteMoE, BackwardFailureCountsAsConstant) {
  Fixture f({4, 4}, 0.8, 3, 2, 24);
  const std::string dead = f.some_chosen_expert();
  f.swarm.caller->set_backward(dead, Behavior::kFail);
  expect_equal(f.remote(), f.reference({}, {dead}));
}

TEST(RemoteMoE, BackwardHangIsCutOff) {
  Fixture f({4, 4}, 0.8, 3, 0, 25);
  const std::string hung = f.some_chosen_expert();
  auto o = f.moe->options();
  o.timeout_after_k_min = Milliseconds{20};
  f.rebuild(o);
  f.swarm.caller->set_backward(hung, Behavior::kHold);
  expect_equal(f.remote(), f.reference({}, {hung}));
}

TEST(RemoteMoE, BackwardKMinNotReachedThrows) {
  Fixture f({4, 4}, 0.6, 3, 0, 26);
  for (const auto& [uid, endpoint] : f.swarm.directory->live())
    f.swarm.caller->set_backward(uid, Behavior::kFail);
  try {
    f.remote();
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("backward_k_min"), std::string::npos) << msg;
    EXPECT_NE(msg.find("injected backward failure"), std::string::npos) << msg;
  }
  auto o = f.moe->options();
  o.allow_zero_outputs = true;
  f.rebuild(o);
  std::set<std::string> everyone;
  for (const auto& [uid, endpoint] : f.swarm.directory->live())
    everyone.insert(uid);
  const Grads got = f.remote();
  // The input still gets the gating path's gradient, none through the experts.
  expect_equal(got, f.reference({}, everyone));
  EXPECT_GT(got.weight.abs().sum().item<double>(), 0)
      << "the gate still learns from the forward outputs";
}

TEST(RemoteMoE, DirectoryFailureThrows) {
  Fixture f({4, 4}, 0.6, 3, 0, 27);
  f.swarm.directory->set_error(unavailable_error("no DHT peers"));
  try {
    f.moe->forward(f.x);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no DHT peers"), std::string::npos) << e.what();
  }
}

TEST(RemoteMoE, RejectsBadOptions) {
  Swarm swarm = testing::make_swarm("e.", {2, 2}, 4, 1.0, 1, 0);
  auto make = [&](auto edit) {
    auto o = testing::moe_options(swarm, 4, 2);
    edit(o);
    return RemoteMixtureOfExperts(o, swarm.directory, swarm.caller);
  };
  EXPECT_THROW(make([](auto& o) { o.k_min = 3; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& o) { o.backward_k_min = -1; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& o) { o.grid_size = {}; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& o) { o.in_features = 0; }), std::invalid_argument);
  EXPECT_THROW(make([](auto& o) { o.forward_timeout = Milliseconds{0}; }), std::invalid_argument);
  EXPECT_NO_THROW(make([](auto&) {}));
  auto moe = make([](auto&) {});
  EXPECT_THROW(moe->forward(torch::randn({3, 5})), std::invalid_argument);  // wrong in_features
}

}  // namespace
}  // namespace hivemind::client
