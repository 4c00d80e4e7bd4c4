// ExpertBackend: forward/backward semantics, one optimizer step per batch, schemas, anomalies,
// checkpoints.
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/nn.h>
#include <torch/optim.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/runtime/expert_backend.h>
#include <hivemind/runtime/runtime.h>

#include "runtime_test_util.h"

namespace hivemind::runtime {
namespace {

constexpr int64_t kHidden = 16;
constexpr uint64_t kSeed = 99;

std::shared_ptr<ExpertBackend> make_backend(const std::string& uid, OptimizerOptions opt,
                                            std::string cls = "ffn",
                                            bool detect_anomalies = false) {
  ExpertBackendOptions options;
  options.optimizer = std::move(opt);
  options.detect_anomalies = detect_anomalies;
  options.compression = quant::Scheme::kBlockAbsmaxU8;
  return ExpertBackend::create(uid, make_expert(cls, kHidden, uid, kSeed).value(), options).value();
}

OptimizerOptions sgd(double lr) {
  OptimizerOptions o;
  o.name = "sgd";
  o.lr = lr;
  return o;
}

OptimizerOptions adam(double lr) {
  OptimizerOptions o;
  o.name = "adam";
  o.lr = lr;
  return o;
}

void expect_params_close(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-5, 1e-6))
        << "parameter " << i << " max diff " << (a[i] - b[i]).abs().max().item<double>();
  }
}

std::vector<torch::Tensor> detached(const torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m.parameters())
    out.push_back(p.detach().clone());
  return out;
}

TEST(ExpertBackendTest, ForwardEqualsTheModuleAndRunsWithoutAutograd) {
  auto backend = make_backend("fwd.0", sgd(0.1));
  auto reference = make_expert("ffn", kHidden, "fwd.0", kSeed).value();
  torch::Tensor x = torch::randn({5, kHidden});
  auto out = backend->forward({x});
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_FALSE((*out)[0].requires_grad());
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal((*out)[0], reference->forward({x})[0]));
  EXPECT_EQ(backend->update_count(), 0);
}

TEST(ExpertBackendTest, SchemasCarryShapeDtypeAndCompression) {
  auto backend = make_backend("schema.0", sgd(0.1));
  ASSERT_EQ(backend->input_schema().size(), 1u);
  EXPECT_EQ(backend->input_schema()[0].dtype, quant::DType::kFloat32);
  EXPECT_EQ(backend->input_schema()[0].shape, std::vector<int64_t>{kHidden});
  EXPECT_EQ(backend->input_schema()[0].compression, quant::Scheme::kBlockAbsmaxU8);
  EXPECT_EQ(schema_string(backend->output_schema()[0]), "float32[batch, 16] block_absmax_u8");
  EXPECT_EQ(backend->backward_schema().size(), 2u);
}

// Three backward tasks reach the runtime while its thread is busy; the batches they form (sizes 2
// and 3+1 with max_batch_size 4) must each apply exactly one optimizer step, matching a local
// reference.
void check_backward_against_reference(const OptimizerOptions& opt, bool use_adam_reference) {
  Runtime runtime;
  Blocker blocker(runtime);
  auto backend = make_backend("bwd.0", opt);
  BatchLimits limits;
  limits.max_batch_size = 4;
  ExpertPools pools = runtime.add_expert(backend, limits).value();
  ASSERT_TRUE(runtime.start().is_ok());
  blocker.hold();
  Completions done;
  std::vector<torch::Tensor> xs, gs;
  for (int64_t size : {2, 3, 1}) {
    xs.push_back(torch::randn({size, kHidden}));
    gs.push_back(torch::randn({size, kHidden}));
  }
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(pools.submit_backward({xs[i], gs[i]}, done.callback(i)).is_ok());
  blocker.release();
  ASSERT_TRUE(done.wait_for(3));
  runtime.stop();
  EXPECT_EQ(pools.backward->stats().batches, 2u);
  EXPECT_EQ(backend->update_count(), 2) << "one optimizer step per backward batch";

  auto reference = make_expert("ffn", kHidden, "bwd.0", kSeed).value();
  std::vector<torch::Tensor> params;
  for (const auto& p : reference->parameters())
    params.push_back(p);
  std::unique_ptr<torch::optim::Optimizer> ref_opt;
  if (use_adam_reference) {
    ref_opt = std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(opt.lr));
  } else {
    ref_opt = std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(opt.lr));
  }
  std::vector<torch::Tensor> ref_grads;
  for (const std::vector<int>& batch : {std::vector<int>{0}, std::vector<int>{1, 2}}) {
    std::vector<torch::Tensor> bx, bg;
    for (int i : batch) {
      bx.push_back(xs[i]);
      bg.push_back(gs[i]);
    }
    torch::Tensor x = torch::cat(bx).requires_grad_(true);
    ref_opt->zero_grad();
    reference->forward({x})[0].backward(torch::cat(bg));
    ref_opt->step();
    int64_t offset = 0;
    for (int i : batch) {
      ref_grads.push_back(x.grad().narrow(0, offset, xs[i].size(0)).clone());
      offset += xs[i].size(0);
    }
  }
  expect_params_close(backend->parameters(), detached(*reference));
  for (int i = 0; i < 3; ++i) {
    TaskResult r = done.result(i);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    ASSERT_EQ(r->size(), 1u);
    EXPECT_TRUE(torch::allclose((*r)[0], ref_grads[i], 1e-5, 1e-6)) << "grad of task " << i;
  }
}

TEST(ExpertBackendTest, BackwardAppliesOneSgdStepPerBatchLikeALocalReference) {
  check_backward_against_reference(sgd(0.05), false);
}

TEST(ExpertBackendTest, BackwardAppliesOneAdamStepPerBatchLikeALocalReference) {
  check_backward_against_reference(adam(1e-3), true);
}

TEST(ExpertBackendTest, SchemaViolationsAreRefusedWithClearErrors) {
  Runtime runtime;
  auto backend = make_backend("bad.0", sgd(0.1));
  ExpertPools pools = runtime.add_expert(backend, BatchLimits{}).value();
  auto never = [](TaskResult) { FAIL() << "a refused task must not complete"; };
  Status wrong_dtype = pools.submit_forward({torch::randn({2, kHidden}, torch::kFloat64)}, never);
  EXPECT_EQ(wrong_dtype.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_dtype.message().find("dtype float64, expected float32"), std::string::npos)
      << wrong_dtype.message();
  Status wrong_shape = pools.submit_forward({torch::randn({2, kHidden + 1})}, never);
  EXPECT_NE(wrong_shape.message().find("shape [2, 17], expected float32[batch, 16]"),
            std::string::npos)
      << wrong_shape.message();
  EXPECT_NE(wrong_shape.message().find("'bad.0'"), std::string::npos);
  Status wrong_count =
      pools.submit_forward({torch::randn({2, kHidden}), torch::randn({2, kHidden})}, never);
  EXPECT_NE(wrong_count.message().find("got 2 tensor(s), expected 1"), std::string::npos)
      << wrong_count.message();
  Status batch_mismatch =
      pools.submit_backward({torch::randn({2, kHidden}), torch::randn({3, kHidden})}, never);
  EXPECT_NE(batch_mismatch.message().find("batch size 3"), std::string::npos)
      << batch_mismatch.message();
  Status scalar = pools.submit_forward({torch::tensor(1.0f)}, never);
  EXPECT_EQ(scalar.code(), StatusCode::kInvalidArgument);
  runtime.stop();
}

TEST(ExpertBackendTest, DetectAnomaliesRefusesNaNAndInf) {
  auto checked = make_backend("nan.0", sgd(0.1), "ffn", /*detect_anomalies=*/true);
  auto unchecked = make_backend("nan.1", sgd(0.1), "ffn", /*detect_anomalies=*/false);
  torch::Tensor x = torch::randn({3, kHidden});
  x[1][2] = std::numeric_limits<float>::quiet_NaN();
  x[2][0] = std::numeric_limits<float>::infinity();
  auto r = checked->check_forward({x});
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("1 NaN and 1 Inf"), std::string::npos)
      << r.status().message();
  EXPECT_TRUE(unchecked->check_forward({x}).is_ok());
  torch::Tensor g = torch::randn({3, kHidden});
  g[0][0] = -std::numeric_limits<float>::infinity();
  auto rb = checked->check_backward({torch::randn({3, kHidden}), g});
  ASSERT_FALSE(rb.is_ok());
  EXPECT_NE(rb.status().message().find("output gradient 0 contains 0 NaN and 1 Inf"),
            std::string::npos)
      << rb.status().message();
}

TEST(ExpertBackendTest, CheckpointSaveAndResumeContinueTraining) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("hm_rt_ckpt_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto first = make_backend("ckpt.0", adam(1e-2));
  for (int step = 0; step < 2; ++step) {
    ASSERT_TRUE(first->backward({torch::randn({4, kHidden}), torch::randn({4, kHidden})}).is_ok());
  }
  const auto file = checkpoint_path(dir, "ckpt.0");
  ASSERT_TRUE(first->save_checkpoint(file).is_ok());
  ASSERT_TRUE(first->save_checkpoint(file).is_ok());  // overwrite in place
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir))
    ++entries;
  EXPECT_EQ(entries, 1u) << "no temporary file may be left behind";

  auto second = make_backend("ckpt.0", adam(1e-2));
  ASSERT_TRUE(second->load_checkpoint(file).is_ok());
  EXPECT_EQ(second->update_count(), 2);
  expect_params_close(second->parameters(), first->parameters());
  // Adam's moments came back too: one more identical step keeps both in lock step.
  torch::Tensor x = torch::randn({4, kHidden});
  torch::Tensor g = torch::randn({4, kHidden});
  ASSERT_TRUE(first->backward({x, g}).is_ok());
  ASSERT_TRUE(second->backward({x, g}).is_ok());
  expect_params_close(second->parameters(), first->parameters());

  auto other_cls = make_backend("ckpt.0", adam(1e-2), "ffn_v08");
  Status s = other_cls->load_checkpoint(file);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("holds a 'ffn' expert"), std::string::npos) << s.message();

  ExpertBackendOptions wide;
  wide.optimizer = adam(1e-2);
  auto other_dim = ExpertBackend::create(
                       "ckpt.0", make_expert("ffn", kHidden * 2, "ckpt.0", kSeed).value(), wide)
                       .value();
  const auto before = other_dim->parameters();
  Status dim = other_dim->load_checkpoint(file);
  EXPECT_EQ(dim.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dim.message().find("hidden_dim"), std::string::npos) << dim.message();
  expect_params_close(other_dim->parameters(), before);  // nothing half-loaded

  EXPECT_EQ(second->load_checkpoint(dir / "missing.pt").code(), StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

TEST(ExpertBackendTest, LearningRateScheduleAndGradientClipping) {
  auto schedule = linear_warmup_schedule(2, 6);
  EXPECT_DOUBLE_EQ(schedule(0), 0.5);
  EXPECT_DOUBLE_EQ(schedule(1), 1.0);
  EXPECT_DOUBLE_EQ(schedule(4), 0.5);
  EXPECT_DOUBLE_EQ(schedule(6), 0.0);
  EXPECT_DOUBLE_EQ(schedule(9), 0.0);

  // SGD with lr 1 and a tiny clip: the whole update is the clipped gradient, its norm the clip
  // value.
  OptimizerOptions clipped = sgd(1.0);
  clipped.clip_grad_norm = 1e-3;
  auto backend = make_backend("clip.0", clipped);
  const auto before = backend->parameters();
  ASSERT_TRUE(
      backend->backward({torch::randn({8, kHidden}), torch::randn({8, kHidden}) * 100}).is_ok());
  const auto after = backend->parameters();
  double sq = 0;
  for (size_t i = 0; i < before.size(); ++i)
    sq += (after[i] - before[i]).pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(sq), 1e-3, 1e-5);

  // A schedule at 0 leaves the parameters unchanged, though the step is counted.
  OptimizerOptions frozen = sgd(1.0);
  frozen.lr_schedule = [](int64_t) { return 0.0; };
  auto still = make_backend("frozen.0", frozen);
  const auto p0 = still->parameters();
  ASSERT_TRUE(still->backward({torch::randn({2, kHidden}), torch::randn({2, kHidden})}).is_ok());
  expect_params_close(still->parameters(), p0);
  EXPECT_EQ(still->update_count(), 1);
}

TEST(ExpertBackendTest, CompressionNamesAndDtypes) {
  EXPECT_EQ(parse_compression("BLOCKWISE_8BIT"), quant::Scheme::kBlockAbsmaxU8);
  EXPECT_EQ(parse_compression("uniform_8bit"), quant::Scheme::kPerTensorAbsmaxU8);
  EXPECT_EQ(parse_compression("NONE"), quant::Scheme::kNone);
  EXPECT_EQ(parse_compression("block_affine_u8"), quant::Scheme::kBlockAffineU8);
  EXPECT_FALSE(parse_compression("zip").has_value());
  EXPECT_EQ(torch_dtype(quant::DType::kBFloat16), torch::kBFloat16);
  EXPECT_EQ(schema_dtype(torch::kBool).value(), quant::DType::kBool);
  EXPECT_FALSE(schema_dtype(torch::kFloat64).is_ok());
}

TEST(ExpertBackendTest, BadOptionsAreRefused) {
  ExpertBackendOptions options;
  options.optimizer.name = "lamb";
  auto r = ExpertBackend::create("o.0", make_expert("ffn", 4, "o.0", 1).value(), options);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("unknown optimizer 'lamb'"), std::string::npos);
  options.optimizer.name = "sgd";
  options.optimizer.lr = -1;
  EXPECT_FALSE(
      ExpertBackend::create("o.0", make_expert("ffn", 4, "o.0", 1).value(), options).is_ok());
}

TEST(ExpertBackendTest, NopAndTransformerBackward) {
  auto nop = make_backend("nop.0", sgd(0.1), "nop");
  torch::Tensor g = torch::randn({3, kHidden});
  auto r = nop->backward({torch::randn({3, kHidden}), g});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(torch::equal((*r)[0], g));

  ExpertConfig config;
  config.cls = "transformer";
  config.hidden_dim = kHidden;
  config.seq_len = 4;
  ExpertBackendOptions options;
  options.optimizer = adam(1e-3);
  auto tr =
      ExpertBackend::create("tr.0", make_expert(config, "tr.0", kSeed).value(), options).value();
  EXPECT_EQ(tr->input_schema()[0].shape, (std::vector<int64_t>{4, kHidden}));
  auto out = tr->backward({torch::randn({2, 4, kHidden}), torch::randn({2, 4, kHidden})});
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].sizes(), (std::vector<int64_t>{2, 4, kHidden}));
  EXPECT_EQ(tr->update_count(), 1);
}

}  // namespace
}  // namespace hivemind::runtime
