// The zoo's `torchscript` class: an expert whose architecture and initial weights come from a
// TorchScript file (torch.jit.save in Python, torch::jit::Module::save in C++), hosted with no
// Python interpreter.
//
//   hivemind-server --expert_cls torchscript --module_path expert.pt [--reinit]
//                   [--sample_input_shape 512]
//
// The file: a TorchScript archive whose `forward` takes the expert's inputs (batch-first tensors)
// and returns a Tensor or a tuple/list of Tensors (batch-first), plus an extra file
// `hivemind_expert.json` that gives each input's per-sample shape and dtype:
//
//   {"format": 1, "inputs": [{"shape": [16], "dtype": "int64"}, {"shape": [512], "dtype":
//   "float32"}]}
//
// (ExpertConfig::sample_inputs, --sample_input_shape, replaces it; one of the two must say.) Inputs
// and outputs may be of any dtype the wire carries: float32, float16, bfloat16 (differentiable, and
// compressed as the server's --compression says), int64, int32, uint8 and bool (raw, and without a
// gradient: token ids, masks).
//
// Loading (make_expert, once per uid, so each expert has its own copy of the weights): the file is
// read, its `forward` is run once on a zero batch of 2 samples to learn the output schema, and
// every parameter and buffer of the scripted module is registered in this torch::nn::Module under
// its dotted name with '.' replaced by "__" ("fc1.weight" -> "fc1__weight"), sharing the tensor
// itself — so the server's optimizer, .to(device), count_parameters and checkpoints see the jit
// module's own tensors. Anything wrong is InvalidArgument naming the file and the problem.
//
// Initial weights: the file's, unless `reinit` (kTorchScriptReinitScheme below).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <torch/csrc/jit/api/module.h>

#include <hivemind/common/result.h>
#include <hivemind/runtime/experts.h>

namespace hivemind::runtime {

inline constexpr const char* kTorchScriptExpertClass = "torchscript";

// The TorchScript extra file that holds the sample input, and its only format so far.
inline constexpr const char* kTorchScriptMetadataFile = "hivemind_expert.json";
inline constexpr int kTorchScriptMetadataFormat = 1;

// --reinit: every parameter drawn in the scripted module's parameter order from the CPU generator
// make_expert seeds with expert_seed(seed, uid), so the same (seed, uid) gives bit-identical
// weights on every host:
//   - a parameter of >= 2 dimensions: U(+-1/sqrt(fan_in)), fan_in = size(1) * size(2) * ... —
//     kaiming_uniform(a = sqrt(5)), nn.Linear's and nn.Conv's default;
//   - a 1-D parameter named "<prefix>bias" whose sibling "<prefix>weight" has >= 2 dimensions:
//     U(+-1/sqrt(fan_in of that weight)), the same layers' default for their bias;
//   - every other parameter (LayerNorm's weight and bias, scalars, ...) and every buffer: as in the
//     file (it is the same file on every host).
inline constexpr const char* kTorchScriptReinitScheme =
    ">=2-D parameters U(+-1/sqrt(fan_in)) (kaiming_uniform a=sqrt(5)); a 1-D 'bias' next to such a "
    "'weight' U(+-1/sqrt(fan_in)); other parameters and buffers as in the file";

class TorchScriptExpert final : public ExpertModule {
 public:
  // Reads `config.module_path` (see the file comment); InvalidArgument naming the file for every
  // problem. Use make_expert, which also applies the seed when config.reinit.
  static Result<std::shared_ptr<TorchScriptExpert>> load(const ExpertConfig& config);

  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& inputs) override;
  std::vector<TensorSchema> input_schema() const override { return inputs_; }
  std::vector<TensorSchema> output_schema() const override { return outputs_; }

  // Re-initializes (kTorchScriptReinitScheme) only when loaded with reinit; else the file's
  // weights stay.
  void initialize_parameters(at::Generator generator) override;

  const torch::jit::Module& scripted_module() const { return scripted_; }
  const std::filesystem::path& module_path() const { return path_; }

 private:
  TorchScriptExpert() : ExpertModule(kTorchScriptExpertClass) {}

  std::filesystem::path path_;
  torch::jit::Module scripted_;
  bool reinit_ = false;
  std::vector<TensorSchema> inputs_;
  std::vector<TensorSchema> outputs_;
};

// The content of hivemind_expert.json for these sample inputs (their dtypes and per-sample shapes;
// compression is the server's and is not written).
std::string torchscript_metadata_json(const std::vector<TensorSchema>& sample_inputs);

// Parses and validates hivemind_expert.json (format 1, 1 to 16 inputs, each 0 to 8 dimensions >= 1
// and a dtype the wire carries); errors name `file`. The schemas have compression kNone.
Result<std::vector<TensorSchema>> parse_torchscript_metadata(std::string_view json,
                                                             std::string_view file);

// Saves `module` with its hivemind_expert.json: the file a server hosts with --module_path.
Status save_torchscript_expert(const torch::jit::Module& module, const std::filesystem::path& file,
                               const std::vector<TensorSchema>& sample_inputs);

// The zoo's ffn of width hidden_dim, LN(x + W2 gelu_tanh(W1 x + b1) + b2), scripted with
// torch::jit::Module::define and saved as a TorchScript expert, its Linear weights and biases drawn
// U(+-1/sqrt(fan_in)) from a CPU generator seeded with `seed`: the benchmark's reference file, and
// a template for writing an expert in C++ without a Python interpreter.
Status save_scripted_ffn(const std::filesystem::path& file, int64_t hidden_dim, uint64_t seed);

}  // namespace hivemind::runtime
