// The torchscript expert class in process: loading a file written by Python or scripted from C++,
// its schemas, forward and gradients against the scripted module itself, the file's weights or the
// seed's (--reinit), device/dtype moves, and every refusal at load with its message.
#include <cmath>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/runtime/expert_backend.h>
#include <hivemind/runtime/experts.h>
#include <hivemind/runtime/torchscript_expert.h>

#include "torchscript_files.h"

namespace hivemind::runtime {
namespace {

using test_experts::TestTempDir;

constexpr int64_t kH = 8;
constexpr uint64_t kSeed = 11;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

ExpertConfig config_for(const std::filesystem::path& file, bool reinit = false) {
  ExpertConfig c;
  c.cls = kTorchScriptExpertClass;
  c.module_path = file.string();
  c.reinit = reinit;
  return c;
}

std::shared_ptr<ExpertModule> load(const std::filesystem::path& file, const std::string& uid,
                                   bool reinit = false) {
  auto made = make_expert(config_for(file, reinit), uid, kSeed);
  EXPECT_TRUE(made.is_ok()) << made.status().to_string();
  return made.is_ok() ? *made : nullptr;
}

// make_expert's error for `config` (the test fails if it loads).
std::string refusal(const ExpertConfig& config) {
  auto made = make_expert(config, "e.0", kSeed);
  EXPECT_FALSE(made.is_ok()) << "loaded " << config.module_path;
  if (made.is_ok()) return "";
  EXPECT_EQ(made.status().code(), StatusCode::kInvalidArgument) << made.status().to_string();
  return made.status().message();
}

std::map<std::string, torch::Tensor> named_parameters(const torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : module.named_parameters())
    out.emplace(item.key(), item.value());
  return out;
}

// The expert's forward and input gradients equal the scripted module's own, run on the same inputs.
void expect_computes_like(ExpertModule& expert, torch::jit::Module scripted, int64_t batch) {
  torch::Tensor x = torch::randn({batch, kH});
  torch::Tensor g = torch::randn({batch, kH});
  torch::Tensor xa = x.clone().requires_grad_(true);
  torch::Tensor ya = expert.forward({xa})[0];
  ya.backward(g);
  torch::Tensor xb = x.clone().requires_grad_(true);
  torch::Tensor yb = scripted.forward({xb}).toTensor();
  yb.backward(g);
  EXPECT_TRUE(torch::allclose(ya, yb, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(xa.grad(), xb.grad(), 1e-6, 1e-6));
}

TEST(TorchScriptExpertTest, IsAZooClass) {
  EXPECT_TRUE(is_expert_class(kTorchScriptExpertClass));
}

TEST(TorchScriptExpertTest, APythonWrittenModuleLoadsWithItsWeightsSchemaAndGradients) {
  if (const std::string why = test_experts::python_torch_unavailable(); !why.empty())
    GTEST_SKIP() << "no Python module can be written: " << why;
  TestTempDir dir;
  const auto file = dir / "expert.pt";
  ASSERT_EQ(test_experts::write_python_expert(file, kH), "");
  auto expert = load(file, "e.0");
  ASSERT_TRUE(expert);
  EXPECT_EQ(expert->expert_cls(), kTorchScriptExpertClass);
  ASSERT_EQ(expert->input_schema().size(), 1u);
  EXPECT_EQ(expert->input_schema()[0].shape, std::vector<int64_t>{kH});
  ASSERT_EQ(expert->output_schema().size(), 1u);
  EXPECT_EQ(expert->output_schema()[0].shape, std::vector<int64_t>{kH});
  EXPECT_EQ(count_parameters(*expert), kH * 2 * kH + 2 * kH + 2 * kH * kH + kH + 2 * kH);

  // Dotted names, '.' -> "__", holding the file's weights (no re-initialization).
  torch::jit::Module file_module = torch::jit::load(file.string());
  auto params = named_parameters(*expert);
  ASSERT_EQ(params.size(), 6u);
  for (const auto& p : file_module.named_parameters()) {
    std::string name = p.name;
    for (size_t at = name.find('.'); at != std::string::npos; at = name.find('.'))
      name.replace(at, 1, "__");
    ASSERT_TRUE(params.count(name)) << name;
    EXPECT_TRUE(torch::equal(params[name], p.value)) << name;
  }
  expect_computes_like(*expert, file_module, 5);
}

TEST(TorchScriptExpertTest, TheScriptedFfnComputesTheZoosFfn) {
  TestTempDir dir;
  const auto file = dir / "ffn.pt";
  ASSERT_TRUE(save_scripted_ffn(file, kH, 5).is_ok());
  auto scripted = load(file, "e.0");
  ASSERT_TRUE(scripted);
  auto zoo = make_expert("ffn", kH, "e.0", kSeed).value();
  // Same parameter order and shapes: give the zoo's module the file's weights.
  auto from = scripted->parameters();
  auto to = zoo->parameters();
  ASSERT_EQ(from.size(), to.size());
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < to.size(); ++i) {
      ASSERT_EQ(from[i].sizes(), to[i].sizes()) << i;
      to[i].copy_(from[i]);
    }
  }
  torch::Tensor x = torch::randn({4, kH});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(scripted->forward({x})[0], zoo->forward({x})[0], 1e-5, 1e-6));
}

TEST(TorchScriptExpertTest, EachUidGetsItsOwnCopyOfTheFileWeights) {
  TestTempDir dir;
  const auto file = dir / "ffn.pt";
  ASSERT_TRUE(save_scripted_ffn(file, kH, 5).is_ok());
  auto a = load(file, "e.0");
  auto b = load(file, "e.1");
  ASSERT_TRUE(a && b);
  auto pa = a->parameters();
  auto pb = b->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;  // the file's, for every uid and seed
    EXPECT_NE(pa[i].data_ptr(), pb[i].data_ptr()) << i;
  }
  {
    torch::NoGradGuard no_grad;
    pa[0].add_(1.0);
  }
  EXPECT_FALSE(torch::equal(pa[0], pb[0]));
}

TEST(TorchScriptExpertTest, ReinitDrawsTheWeightsFromSeedAndUid) {
  TestTempDir dir;
  const auto file = dir / "ffn.pt";
  ASSERT_TRUE(save_scripted_ffn(file, kH, 5).is_ok());
  auto from_file = named_parameters(*load(file, "e.0"));
  auto a = named_parameters(*load(file, "e.0", true));
  auto again = named_parameters(*load(file, "e.0", true));
  auto other_uid = named_parameters(*load(file, "e.1", true));
  ASSERT_EQ(a.size(), 6u);
  for (const auto& [name, p] : a) {
    EXPECT_TRUE(torch::equal(p, again[name])) << name;  // same (seed, uid): bit-identical
  }
  // >= 2-D weights and the biases next to them: redrawn, per uid, within U(+-1/sqrt(fan_in)).
  for (const auto& [name, fan_in] : std::map<std::string, int64_t>{{"ffn_weight", kH},
                                                                   {"ffn_bias", kH},
                                                                   {"ffn_output_weight", 4 * kH},
                                                                   {"ffn_output_bias", 4 * kH}}) {
    EXPECT_FALSE(torch::equal(a[name], from_file[name])) << name;
    EXPECT_FALSE(torch::equal(a[name], other_uid[name])) << name;
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    EXPECT_LE(a[name].abs().max().item<double>(), bound) << name;
  }
  // 1-D parameters without a >= 2-D sibling weight (LayerNorm's): as in the file.
  for (const char* name : {"layer_norm_weight", "layer_norm_bias"}) {
    EXPECT_TRUE(torch::equal(a[name], from_file[name])) << name;
  }
}

TEST(TorchScriptExpertTest, MovesKeepTheScriptedModuleAndTheRegisteredTensorsTheSame) {
  // nn::Module::to() moves with set_data(), in place on each TensorImpl; a dtype move goes through
  // the same path as a device move, so this CPU test stands for .to(cuda).
  TestTempDir dir;
  const auto file = dir / "ffn.pt";
  ASSERT_TRUE(save_scripted_ffn(file, kH, 5).is_ok());
  auto expert = std::dynamic_pointer_cast<TorchScriptExpert>(load(file, "e.0"));
  ASSERT_TRUE(expert);
  expert->to(torch::kFloat64);
  auto registered = named_parameters(*expert);
  for (const auto& p : expert->scripted_module().named_parameters()) {
    std::string name = p.name;
    EXPECT_EQ(p.value.scalar_type(), torch::kFloat64) << name;
    EXPECT_EQ(p.value.data_ptr(), registered.at(name).data_ptr()) << name;
  }
  // The scripted module computes with the moved weights.
  torch::Tensor y = expert->forward({torch::randn({3, kH}, torch::kFloat64)})[0];
  EXPECT_EQ(y.scalar_type(), torch::kFloat64);
  // An optimizer step on a registered parameter is a step of the scripted module's weight.
  {
    torch::NoGradGuard no_grad;
    registered.at("ffn_bias").fill_(0.25);
  }
  for (const auto& p : expert->scripted_module().named_parameters()) {
    if (p.name == "ffn_bias") {
      EXPECT_TRUE(torch::all(p.value == 0.25).item<bool>());
    }
  }
}

TEST(TorchScriptExpertTest, SeveralInputsAndATupleOfOutputs) {
  TestTempDir dir;
  const auto file = dir / "two.pt";
  auto module = test_experts::scripted_module(R"(
def forward(self, x, context):
    y = torch.matmul(x, self.w) + self.b + context.mean(1)
    return (y, y.sum(1, keepdim=True) * context[:, 0, :2])
)",
                                              kH);
  ASSERT_TRUE(save_torchscript_expert(module, file, {{.shape = {kH}}, {.shape = {3, kH}}}).is_ok());
  auto expert = load(file, "e.0");
  ASSERT_TRUE(expert);
  ASSERT_EQ(expert->input_schema().size(), 2u);
  EXPECT_EQ(expert->input_schema()[1].shape, (std::vector<int64_t>{3, kH}));
  ASSERT_EQ(expert->output_schema().size(), 2u);
  EXPECT_EQ(expert->output_schema()[0].shape, std::vector<int64_t>{kH});
  EXPECT_EQ(expert->output_schema()[1].shape, std::vector<int64_t>{2});
  auto out = expert->forward({torch::randn({4, kH}), torch::randn({4, 3, kH})});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].sizes(), (c10::IntArrayRef{4, 2}));
}

TEST(TorchScriptExpertTest, SampleInputShapeGivenInTheConfigReplacesTheFiles) {
  TestTempDir dir;
  auto module = test_experts::scripted_module(R"(
def forward(self, x):
    return torch.matmul(x, self.w) + self.b
)",
                                              kH);
  // A file without hivemind_expert.json (a plain torch.jit.save): refused, unless the shape is
  // given.
  const auto bare = dir / "bare.pt";
  module.save(bare.string());
  const std::string missing = refusal(config_for(bare));
  EXPECT_TRUE(contains(missing, bare.string())) << missing;
  EXPECT_TRUE(contains(missing, "no hivemind_expert.json")) << missing;
  EXPECT_TRUE(contains(missing, "--sample_input_shape")) << missing;
  ExpertConfig given = config_for(bare);
  given.sample_inputs = {{.shape = {5, kH}}};
  auto made = make_expert(given, "e.0", kSeed);
  ASSERT_TRUE(made.is_ok()) << made.status().to_string();
  EXPECT_EQ((*made)->input_schema()[0].shape, (std::vector<int64_t>{5, kH}));
  EXPECT_EQ((*made)->output_schema()[0].shape, (std::vector<int64_t>{5, kH}));
  // A file whose metadata is wrong for the module: the given shape wins.
  const auto wrong = dir / "wrong.pt";
  ASSERT_TRUE(save_torchscript_expert(module, wrong, {{.shape = {kH + 1}}}).is_ok());
  ExpertConfig fixed = config_for(wrong);
  fixed.sample_inputs = {{.shape = {kH}}};
  EXPECT_TRUE(make_expert(fixed, "e.0", kSeed).is_ok());
  // A given shape outside the trainers' limits.
  ExpertConfig nine_dims = config_for(bare);
  nine_dims.sample_inputs = {{.shape = {1, 1, 1, 1, 1, 1, 1, 1, kH}}};
  const std::string too_many = refusal(nine_dims);
  EXPECT_TRUE(contains(too_many, "--sample_input_shape")) << too_many;
  EXPECT_TRUE(contains(too_many, "at most 8 dimensions")) << too_many;
}

TEST(TorchScriptExpertTest, FilesThatCannotBeLoadedAreRefusedNamingTheFile) {
  TestTempDir dir;
  ExpertConfig no_path;
  no_path.cls = kTorchScriptExpertClass;
  EXPECT_TRUE(contains(refusal(no_path), "--module_path"));

  const auto absent = dir / "absent.pt";
  const std::string not_found = refusal(config_for(absent));
  EXPECT_TRUE(contains(not_found, absent.string() + ": no such file")) << not_found;

  const std::string directory = refusal(config_for(dir.path()));
  EXPECT_TRUE(contains(directory, "not a regular file")) << directory;

  const auto garbage = dir / "garbage.pt";
  std::ofstream(garbage) << "not a zip archive\n";
  const std::string not_archive = refusal(config_for(garbage));
  EXPECT_TRUE(contains(not_archive, garbage.string())) << not_archive;
  EXPECT_TRUE(contains(not_archive, "cannot be loaded as a TorchScript archive")) << not_archive;

  const auto no_forward = dir / "no_forward.pt";
  test_experts::scripted_module("", kH).save(
      no_forward.string(),
      {{kTorchScriptMetadataFile, torchscript_metadata_json({{.shape = {kH}}})}});
  const std::string forwardless = refusal(config_for(no_forward));
  EXPECT_TRUE(contains(forwardless, no_forward.string())) << forwardless;
  EXPECT_TRUE(contains(forwardless, "no forward method")) << forwardless;
}

// A module whose forward is `body`, saved with a sample input of one [kH] tensor; make_expert's
// refusal.
std::string refusal_of_forward(const TestTempDir& dir, const std::string& name,
                               const std::string& body) {
  const auto file = dir / (name + ".pt");
  auto module = test_experts::scripted_module("def forward(self, x):\n    " + body + "\n", kH);
  EXPECT_TRUE(save_torchscript_expert(module, file, {{.shape = {kH}}}).is_ok());
  const std::string message = refusal(config_for(file));
  EXPECT_TRUE(contains(message, file.string())) << message;
  return message;
}

TEST(TorchScriptExpertTest, ForwardsThatDoNotFitTheSchemaAreRefusedAtLoad) {
  TestTempDir dir;
  // The sample input does not fit the module: the shapes tried are named.
  const std::string mismatch =
      refusal_of_forward(dir, "mismatch", "return torch.matmul(x, self.w[:3])");
  EXPECT_TRUE(contains(mismatch, "forward fails on a zero batch of 1 input(s): float32[2, 8]"))
      << mismatch;
  const std::string not_tensor = refusal_of_forward(dir, "int", "return 7");
  EXPECT_TRUE(contains(not_tensor, "forward returned a Int, not a Tensor or a tuple/list"))
      << not_tensor;
  const std::string tuple = refusal_of_forward(dir, "tuple", "return (x, 3)");
  EXPECT_TRUE(contains(tuple, "element 1 is a Int, not a Tensor")) << tuple;
  const std::string list = refusal_of_forward(dir, "list", "return [1, 2]");
  EXPECT_TRUE(contains(list, "element 0 is a Int, not a Tensor")) << list;
  const std::string scalar = refusal_of_forward(dir, "scalar", "return x.sum()");
  EXPECT_TRUE(contains(scalar, "output 0 has shape [] for a batch of 2 samples")) << scalar;
  const std::string batch = refusal_of_forward(dir, "batch", "return x[0:1]");
  EXPECT_TRUE(contains(batch, "output 0 has shape [1, 8] for a batch of 2 samples")) << batch;
  const std::string dtype = refusal_of_forward(dir, "dtype", "return x.double()");
  EXPECT_TRUE(contains(dtype,
                       "output 0 is float64 (the wire carries float32, float16, bfloat16, int64, "
                       "int32, uint8, bool)"))
      << dtype;
  const std::string empty = refusal_of_forward(dir, "empty", "return ()");
  EXPECT_TRUE(contains(empty, "no output tensor")) << empty;
}

TEST(TorchScriptExpertTest, InputsAndOutputsOfEveryWireDtype) {
  // Token ids in, an embedding sum plus a float input, and outputs of other dtypes: the metadata's
  // dtypes reach the schema, the zero probe runs in them, and the outputs' dtypes are learned.
  TestTempDir dir;
  const auto file = dir / "ids.pt";
  auto module = test_experts::scripted_module(R"(
def forward(self, ids, x, keep):
    y = torch.embedding(self.w, ids).sum(1) + x * keep.unsqueeze(1).float()
    return (y, y.to(15), ids * 2, keep)  # 15: c10::ScalarType::BFloat16
)",
                                              kH);
  const std::vector<TensorSchema> inputs{{.dtype = quant::DType::kInt64, .shape = {3}},
                                         {.dtype = quant::DType::kFloat32, .shape = {kH}},
                                         {.dtype = quant::DType::kBool, .shape = {}}};
  ASSERT_TRUE(save_torchscript_expert(module, file, inputs).is_ok());
  auto expert = load(file, "e.0");
  ASSERT_TRUE(expert);
  EXPECT_EQ(expert->input_schema(), inputs);
  const std::vector<TensorSchema> outputs{{.dtype = quant::DType::kFloat32, .shape = {kH}},
                                          {.dtype = quant::DType::kBFloat16, .shape = {kH}},
                                          {.dtype = quant::DType::kInt64, .shape = {3}},
                                          {.dtype = quant::DType::kBool, .shape = {}}};
  EXPECT_EQ(expert->output_schema(), outputs);

  // The backend trains it: the table's rows that the ids chose get a gradient, the ids none.
  ExpertBackendOptions options;
  options.optimizer.name = "sgd";
  options.optimizer.lr = 0.5;
  auto backend = ExpertBackend::create("e.0", expert, options);
  ASSERT_TRUE(backend.is_ok()) << backend.status().to_string();
  const torch::Tensor ids = torch::tensor({1, 1, 2, 5, 5, 5}, torch::kInt64).view({2, 3});
  const torch::Tensor x = torch::randn({2, kH});
  const torch::Tensor keep = torch::tensor({true, false});
  ASSERT_TRUE((*backend)->check_forward({ids, x, keep}).is_ok());
  auto forward = (*backend)->forward({ids, x, keep});
  ASSERT_TRUE(forward.is_ok()) << forward.status().to_string();
  EXPECT_TRUE(torch::equal((*forward)[2], ids * 2));
  const torch::Tensor table_before = (*backend)->parameters()[0];
  std::vector<torch::Tensor> inputs_and_grads{ids,
                                              x,
                                              keep,
                                              torch::ones({2, kH}),
                                              torch::zeros({2, kH}, torch::kBFloat16),
                                              torch::zeros({2, 3}, torch::kInt64),
                                              torch::zeros({2}, torch::kBool)};
  ASSERT_TRUE((*backend)->check_backward(inputs_and_grads).is_ok());
  auto grads = (*backend)->backward(inputs_and_grads);
  ASSERT_TRUE(grads.is_ok()) << grads.status().to_string();
  ASSERT_EQ(grads->size(), 3u);
  EXPECT_EQ((*grads)[0].scalar_type(), torch::kInt64);
  EXPECT_EQ((*grads)[0].count_nonzero().item<int64_t>(), 0);
  // d y / d x is `keep`: ones for the first sample, zeros for the second.
  EXPECT_TRUE(torch::equal((*grads)[1][0], torch::ones({kH})));
  EXPECT_TRUE(torch::equal((*grads)[1][1], torch::zeros({kH})));
  const torch::Tensor moved = ((*backend)->parameters()[0] - table_before).abs().sum(1) > 0;
  EXPECT_TRUE(
      torch::equal(moved, torch::tensor({false, true, true, false, false, true, false, false})))
      << moved;
}

TEST(TorchScriptExpertTest, AListOfTensorsIsAccepted) {
  TestTempDir dir;
  const auto file = dir / "list.pt";
  auto module = test_experts::scripted_module(R"(
def forward(self, x):
    return [x + self.b, x * 2.0]
)",
                                              kH);
  ASSERT_TRUE(save_torchscript_expert(module, file, {{.shape = {kH}}}).is_ok());
  auto expert = load(file, "e.0");
  ASSERT_TRUE(expert);
  EXPECT_EQ(expert->output_schema().size(), 2u);
}

TEST(TorchScriptExpertTest, MalformedMetadataIsRefusedNamingTheFileAndTheProblem) {
  auto problem = [](const std::string& json) {
    auto parsed = parse_torchscript_metadata(json, "m.pt");
    EXPECT_FALSE(parsed.is_ok()) << json;
    if (parsed.is_ok()) return std::string();
    EXPECT_TRUE(
        contains(parsed.status().message(), "hivemind_expert.json of TorchScript file m.pt"))
        << parsed.status().message();
    return parsed.status().message();
  };
  EXPECT_TRUE(contains(problem("{"), "not valid JSON"));
  EXPECT_TRUE(contains(problem(std::string(64 * 1024 + 1, ' ')), "65537 bytes (at most 65536)"));
  EXPECT_TRUE(contains(problem("[1]"), "not a JSON object"));
  EXPECT_TRUE(contains(problem(R"({"inputs": []})"), "no integer \"format\""));
  EXPECT_TRUE(contains(problem(R"({"format": 2, "inputs": []})"), "format 2 is not supported"));
  EXPECT_TRUE(contains(problem(R"({"format": 1})"), "no \"inputs\" array"));
  EXPECT_TRUE(contains(problem(R"({"format": 1, "inputs": []})"), "0 inputs (1 to 16)"));
  std::string seventeen = R"({"format": 1, "inputs": [)";
  for (int i = 0; i < 17; ++i)
    seventeen += std::string(i ? "," : "") + R"({"shape": [1], "dtype": "float32"})";
  EXPECT_TRUE(contains(problem(seventeen + "]}"), "17 inputs (1 to 16)"));
  EXPECT_TRUE(contains(problem(R"({"format": 1, "inputs": [3]})"), "input 0 is not an object"));
  EXPECT_TRUE(contains(problem(R"({"format": 1, "inputs": [{"dtype": "float32"}]})"),
                       "input 0 has no \"shape\" array"));
  EXPECT_TRUE(contains(problem(R"({"format": 1, "inputs": [{"shape": [0], "dtype": "float32"}]})"),
                       "input 0 has dimension 0"));
  EXPECT_TRUE(contains(problem(R"({"format": 1, "inputs": [{"shape": [-4], "dtype": "float32"}]})"),
                       "input 0 has dimension -4"));
  EXPECT_TRUE(
      contains(problem(R"({"format": 1, "inputs": [{"shape": [2.5], "dtype": "float32"}]})"),
               "input 0 has dimension 2.5"));
  EXPECT_TRUE(contains(
      problem(R"({"format": 1, "inputs": [{"shape": [1,1,1,1,1,1,1,1,1], "dtype": "float32"}]})"),
      "input 0 has 9 dimensions (at most 8)"));
  EXPECT_TRUE(contains(problem(R"({"format": 1, "inputs": [{"shape": [4]}]})"),
                       "input 0 has no \"dtype\" string"));
  EXPECT_TRUE(contains(problem(R"({"format": 1, "inputs": [{"shape": [4], "dtype": "float64"}]})"),
                       "input 0 has dtype \"float64\" (one of float32, float16, bfloat16, int64, "
                       "int32, uint8, bool)"));
  EXPECT_TRUE(contains(problem(R"({"format": 1, "inputs": [{"shape": [4], "dtype": "Int64"}]})"),
                       "input 0 has dtype \"Int64\""));
  // Round trip of the writer, every wire dtype included.
  const std::vector<TensorSchema> written{
      {.shape = {512}},
      {.dtype = quant::DType::kInt64, .shape = {128}},
      {.dtype = quant::DType::kBFloat16, .shape = {128, 512}},
      {.dtype = quant::DType::kFloat16, .shape = {2}},
      {.dtype = quant::DType::kInt32, .shape = {3}},
      {.dtype = quant::DType::kUInt8, .shape = {4}},
      {.dtype = quant::DType::kBool, .shape = {}},
  };
  auto parsed = parse_torchscript_metadata(torchscript_metadata_json(written), "m.pt");
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, written);

  // Through a file: make_expert names the file.
  TestTempDir dir;
  const auto file = dir / "bad_meta.pt";
  test_experts::scripted_module("def forward(self, x):\n    return x\n", kH)
      .save(file.string(), {{kTorchScriptMetadataFile, R"({"format": 1, "inputs": [{}]})"}});
  const std::string message = refusal(config_for(file));
  EXPECT_TRUE(contains(message, "hivemind_expert.json of TorchScript file " + file.string()))
      << message;
}

}  // namespace
}  // namespace hivemind::runtime
