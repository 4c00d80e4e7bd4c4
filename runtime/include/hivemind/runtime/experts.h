// The expert zoo: the LibTorch blocks a server can host, built deterministically from a seed.
//
//   ffn          LN(x + Linear(4h,h)(gelu(Linear(h,4h) x)))      ~8 h^2 parameters
//                hivemind's block since its PR #211 (2021)
//   ffn_v08      x + [Linear(h,4h) LN ReLU Linear(4h,4h) LN ReLU Linear(4h,h)]
//                ~24 h^2 parameters: hivemind v0.8's `ffn`, the block to use when comparing with
//                hivemind v0.8's benchmarks
//   transformer  one encoder layer on [batch, seq, h]: 16 heads (or the largest count <= 16
//                dividing h), feed-forward 4h, no dropout
//   nop          x.clone()
//   torchscript  a TorchScript file's module (torchscript_expert.h): ExpertConfig::module_path
//
// Other classes are added with register_expert_class (expert_registry.h, included here), and
// make_expert builds them like the zoo's.
//
// Determinism: every parameter is drawn from a CPU generator seeded by expert_seed(base_seed, uid),
// never from LibTorch's global generator, so a trainer (or a test) rebuilds a server's initial
// weights locally with make_expert(cls, hidden_dim, uid, base_seed) and gets bit-identical
// parameters. This holds for registered classes too: make_expert re-initializes whatever their
// factory built. The torchscript class keeps its file's weights (the same file on every host)
// unless ExpertConfig::reinit asks for the seed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <hivemind/common/result.h>
#include <hivemind/runtime/expert_registry.h>
#include <hivemind/runtime/tensor_schema.h>

namespace hivemind::runtime {

// An expert block: several tensors in, several out, each batch-first.
class ExpertModule : public torch::nn::Module {
 public:
  explicit ExpertModule(std::string cls) : torch::nn::Module(cls), cls_(std::move(cls)) {}

  virtual std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& inputs) = 0;
  // Shapes without the batch dimension; compression kNone (the backend sets the wire compression).
  virtual std::vector<TensorSchema> input_schema() const = 0;
  virtual std::vector<TensorSchema> output_schema() const = 0;

  const std::string& expert_cls() const { return cls_; }

  // Sets the initial weights from `generator`, which make_expert seeds with
  // expert_seed(base_seed, uid). The default is the zoo's scheme (make_expert's comment); a class
  // whose weights come from elsewhere (the torchscript class's file) overrides it.
  virtual void initialize_parameters(at::Generator generator);

 private:
  std::string cls_;
};

struct ExpertConfig {
  std::string cls = "ffn";
  int64_t hidden_dim = 1024;
  int64_t seq_len = 128;  // transformer only: the sequence length of its [batch, seq, hidden] input
  // torchscript only (torchscript_expert.h):
  std::string module_path;  // the TorchScript file
  bool reinit = false;      // initial weights from the seed instead of the file's
  // Each input's dtype and per-sample shape (no batch dimension); empty: the file's
  // hivemind_expert.json.
  std::vector<TensorSchema> sample_inputs;
};

// The per-expert seed: a 64-bit mix of the base seed and the uid (FNV-1a of the uid, then
// splitmix64), so experts of one server differ and the same (seed, uid) gives the same weights on
// every host.
uint64_t expert_seed(uint64_t base_seed, std::string_view uid);

// Builds an expert of a registered class (expert_registry.h) on the CPU with its factory, then
// initializes its parameters from expert_seed(base_seed, uid) with initialize_parameters; the
// default scheme: small normal fill, then LibTorch's default scheme for Linear, LayerNorm and
// MultiheadAttention layers (the buffers are left as the factory made them). InvalidArgument for an
// unknown class (the message lists the registered ones), a hidden_dim outside [1, 2^20], a module
// whose expert_cls() is not the class, or schemas a trainer could not read (1 to 16 tensors each
// way, at most 8 per-sample dimensions, each >= 1); a factory's error or exception comes back with
// the class named.
Result<std::shared_ptr<ExpertModule>> make_expert(const ExpertConfig& config, std::string_view uid,
                                                  uint64_t base_seed);
Result<std::shared_ptr<ExpertModule>> make_expert(std::string_view cls, int64_t hidden_dim,
                                                  std::string_view uid, uint64_t base_seed);

// Trainable parameters (elements) of a module.
int64_t count_parameters(const torch::nn::Module& module);

// The default base seed of servers and of the client's reference rebuild.
inline constexpr uint64_t kDefaultExpertSeed = 0x5eed'0f'e8'9e'72ULL;

}  // namespace hivemind::runtime
