#include <algorithm>
#include <cmath>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <torch/nn.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/runtime/experts.h>
#include <hivemind/runtime/torchscript_expert.h>

#include "expert_registry_detail.h"
#include "torch_errors.h"

namespace hivemind::runtime {

namespace {

std::vector<TensorSchema> float_schema(std::vector<int64_t> shape) {
  TensorSchema s;
  s.dtype = quant::DType::kFloat32;
  s.shape = std::move(shape);
  return {s};
}

// hivemind's current block (moe/server/layers/common.py, FeedforwardBlock).
class Ffn final : public ExpertModule {
 public:
  explicit Ffn(int64_t h)
      : ExpertModule("ffn"),
        h_(h),
        fc1_(register_module("ffn", torch::nn::Linear(h, 4 * h))),
        fc2_(register_module("ffn_output", torch::nn::Linear(4 * h, h))),
        norm_(register_module("layer_norm",
                              torch::nn::LayerNorm(torch::nn::LayerNormOptions({h}).eps(1e-12)))) {}

  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& in) override {
    torch::Tensor y = fc2_(torch::gelu(fc1_(in[0]), "tanh"));
    return {norm_(in[0] + y)};
  }
  std::vector<TensorSchema> input_schema() const override { return float_schema({h_}); }
  std::vector<TensorSchema> output_schema() const override { return float_schema({h_}); }

 private:
  int64_t h_;
  torch::nn::Linear fc1_, fc2_;
  torch::nn::LayerNorm norm_;
};

// hivemind v0.8's 'ffn' (server/layers/common.py at tag v0.8.0).
class FfnV08 final : public ExpertModule {
 public:
  explicit FfnV08(int64_t h)
      : ExpertModule("ffn_v08"),
        h_(h),
        seq_(register_module(
            "ffn", torch::nn::Sequential(torch::nn::Linear(h, 4 * h),
                                         torch::nn::LayerNorm(torch::nn::LayerNormOptions({4 * h})),
                                         torch::nn::ReLU(), torch::nn::Linear(4 * h, 4 * h),
                                         torch::nn::LayerNorm(torch::nn::LayerNormOptions({4 * h})),
                                         torch::nn::ReLU(), torch::nn::Linear(4 * h, h)))) {}

  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& in) override {
    return {in[0] + seq_->forward(in[0])};
  }
  std::vector<TensorSchema> input_schema() const override { return float_schema({h_}); }
  std::vector<TensorSchema> output_schema() const override { return float_schema({h_}); }

 private:
  int64_t h_;
  torch::nn::Sequential seq_;
};

int64_t heads_for(int64_t h) {
  for (int64_t heads = 16; heads > 1; --heads) {
    if (h % heads == 0) return heads;
  }
  return 1;
}

class Transformer final : public ExpertModule {
 public:
  Transformer(int64_t h, int64_t seq)
      : ExpertModule("transformer"),
        h_(h),
        seq_(seq),
        layer_(register_module("encoder_layer",
                               torch::nn::TransformerEncoderLayer(
                                   torch::nn::TransformerEncoderLayerOptions(h, heads_for(h))
                                       .dim_feedforward(4 * h)
                                       .dropout(0.0)))) {}

  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& in) override {
    // LibTorch 1.13's encoder layer is sequence-first; the wire and the batcher are batch-first.
    return {layer_(in[0].transpose(0, 1)).transpose(0, 1).contiguous()};
  }
  std::vector<TensorSchema> input_schema() const override { return float_schema({seq_, h_}); }
  std::vector<TensorSchema> output_schema() const override { return float_schema({seq_, h_}); }

 private:
  int64_t h_, seq_;
  torch::nn::TransformerEncoderLayer layer_;
};

class Nop final : public ExpertModule {
 public:
  explicit Nop(int64_t h) : ExpertModule("nop"), h_(h) {}
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& in) override {
    return {in[0].clone()};
  }
  std::vector<TensorSchema> input_schema() const override { return float_schema({h_}); }
  std::vector<TensorSchema> output_schema() const override { return float_schema({h_}); }

 private:
  int64_t h_;
};

// Every parameter from `gen`, in registration order: first a small normal fill (so a parameter of
// a kind not handled below, a registered class's own included, is still deterministic), then
// LibTorch's default scheme per layer kind (Linear: U(+-1/sqrt(fan_in)); LayerNorm: ones/zeros;
// attention in_proj: Xavier uniform, zero biases).
void initialize(torch::nn::Module& root, at::Generator gen) {
  torch::NoGradGuard no_grad;
  for (auto& p : root.parameters())
    p.normal_(0.0, 0.02, gen);
  for (const auto& m : root.modules(/*include_self=*/true)) {
    if (auto* linear = m->as<torch::nn::Linear>()) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(linear->weight.size(1)));
      linear->weight.uniform_(-bound, bound, gen);
      if (linear->bias.defined()) linear->bias.uniform_(-bound, bound, gen);
    } else if (auto* norm = m->as<torch::nn::LayerNorm>()) {
      if (norm->weight.defined()) norm->weight.fill_(1.0);
      if (norm->bias.defined()) norm->bias.zero_();
    } else if (auto* mha = m->as<torch::nn::MultiheadAttention>()) {
      if (mha->in_proj_weight.defined()) {
        const double fan_in = static_cast<double>(mha->in_proj_weight.size(1));
        const double fan_out = static_cast<double>(mha->in_proj_weight.size(0));
        const double bound = std::sqrt(6.0 / (fan_in + fan_out));
        mha->in_proj_weight.uniform_(-bound, bound, gen);
      }
      if (mha->in_proj_bias.defined()) mha->in_proj_bias.zero_();
    }
  }
  // out_proj of attention is a Linear visited after its parent; hivemind/PyTorch zero its bias.
  for (const auto& m : root.modules(true)) {
    if (auto* mha = m->as<torch::nn::MultiheadAttention>()) {
      if (mha->out_proj->bias.defined()) mha->out_proj->bias.zero_();
    }
  }
}

// What a trainer's info decoder accepts (protocol::Limits), so a module that no trainer could call
// is refused when it is built, not when the first trainer asks.
Status check_schemas(const std::vector<TensorSchema>& schemas, const char* kind) {
  const protocol::Limits limits;
  if (schemas.empty() || schemas.size() > limits.max_tensors) {
    return invalid_argument_error(fmt::format("the module declares {} {} tensors (1 to {})",
                                              schemas.size(), kind, limits.max_tensors));
  }
  for (size_t i = 0; i < schemas.size(); ++i) {
    const std::vector<int64_t>& shape = schemas[i].shape;
    const bool dims_ok = std::all_of(shape.begin(), shape.end(),
                                     [&](int64_t d) { return d >= 1 && d <= limits.max_dim; });
    if (shape.size() > limits.max_ndim || !dims_ok) {
      return invalid_argument_error(
          fmt::format("{} {} has per-sample shape [{}]: at most {} dimensions, each in [1, {}]",
                      kind, i, fmt::join(shape, ", "), limits.max_ndim, limits.max_dim));
    }
  }
  return Status::ok();
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

void ExpertModule::initialize_parameters(at::Generator generator) {
  initialize(*this, std::move(generator));
}

uint64_t expert_seed(uint64_t base_seed, std::string_view uid) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : uid) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return splitmix64(base_seed ^ splitmix64(h));
}

namespace detail {

std::vector<std::pair<std::string, ExpertFactory>> zoo_expert_classes() {
  using Module = std::shared_ptr<ExpertModule>;
  return {
      {"ffn", [](const ExpertConfig& c) -> Module { return std::make_shared<Ffn>(c.hidden_dim); }},
      {"ffn_v08",
       [](const ExpertConfig& c) -> Module { return std::make_shared<FfnV08>(c.hidden_dim); }},
      {"transformer",
       [](const ExpertConfig& c) -> Result<Module> {
         if (c.seq_len < 1) return invalid_argument_error("transformer seq_len must be positive");
         return Module(std::make_shared<Transformer>(c.hidden_dim, c.seq_len));
       }},
      {"nop", [](const ExpertConfig& c) -> Module { return std::make_shared<Nop>(c.hidden_dim); }},
      {kTorchScriptExpertClass,
       [](const ExpertConfig& c) -> Result<Module> {
         HIVEMIND_ASSIGN_OR_RETURN(auto module, TorchScriptExpert::load(c));
         return Module(std::move(module));
       }},
  };
}

}  // namespace detail

Result<std::shared_ptr<ExpertModule>> make_expert(const ExpertConfig& config, std::string_view uid,
                                                  uint64_t base_seed) {
  const int64_t h = config.hidden_dim;
  if (h < 1 || h > (int64_t{1} << 20)) {
    return invalid_argument_error(fmt::format("hidden_dim must be in [1, 2^20], got {}", h));
  }
  const ExpertFactory factory = detail::find_expert_factory(config.cls);
  if (!factory) {
    return invalid_argument_error(fmt::format("unknown expert class '{}' (known: {})", config.cls,
                                              fmt::join(expert_classes(), ", ")));
  }
  const std::string what = fmt::format("expert class '{}'", config.cls);
  HIVEMIND_ASSIGN_OR_RETURN(std::shared_ptr<ExpertModule> module,
                            detail::guarded(what, [&]() -> Result<std::shared_ptr<ExpertModule>> {
                              Result<std::shared_ptr<ExpertModule>> made = factory(config);
                              if (!made.is_ok()) return made.status().with_context(what);
                              return made;
                            }));
  if (module == nullptr) return internal_error(what + ": the factory returned no module");
  if (module->expert_cls() != config.cls) {
    return invalid_argument_error(fmt::format(
        "{}: the factory built a module whose expert_cls() is '{}' (construct ExpertModule with "
        "the registered name)",
        what, module->expert_cls()));
  }
  HIVEMIND_RETURN_IF_ERROR(detail::guarded(what, [&]() -> Status {
    HIVEMIND_RETURN_IF_ERROR(check_schemas(module->input_schema(), "input").with_context(what));
    return check_schemas(module->output_schema(), "output").with_context(what);
  }));
  Status initialized = detail::guarded(what + ": initializing from the seed", [&]() -> Status {
    module->initialize_parameters(
        at::make_generator<at::CPUGeneratorImpl>(expert_seed(base_seed, uid)));
    return Status::ok();
  });
  if (!initialized.is_ok()) return initialized;
  return module;
}

Result<std::shared_ptr<ExpertModule>> make_expert(std::string_view cls, int64_t hidden_dim,
                                                  std::string_view uid, uint64_t base_seed) {
  ExpertConfig config;
  config.cls = std::string(cls);
  config.hidden_dim = hidden_dim;
  return make_expert(config, uid, base_seed);
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) {
    if (p.requires_grad()) n += p.numel();
  }
  return n;
}

}  // namespace hivemind::runtime
