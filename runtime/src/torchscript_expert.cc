#include <cmath>
#include <map>
#include <set>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/protocol/expert_rpc.h>
#include <hivemind/runtime/torchscript_expert.h>

namespace hivemind::runtime {

namespace {

// The batch of the zero sample that finds the output schema at load: 2, not 1, so that a module
// which drops or hard-codes the batch dimension (a squeeze, a reshape to a constant) is caught.
constexpr int64_t kProbeBatch = 2;

// 16 inputs of 8 dimensions take a few hundred bytes; a larger file is not metadata, and is refused
// before the parser builds anything from it.
constexpr size_t kMaxMetadataBytes = 64 * 1024;

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// c10::Error's message without its C++ backtrace; other exceptions' what().
std::string error_text(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e))
    return c10_error->what_without_backtrace();
  return e.what();
}

// The wire's dtypes by name, for the errors that list them.
constexpr const char* kWireDTypes = "float32, float16, bfloat16, int64, int32, uint8, bool";

// What the trainers' info decoder accepts, the same limits make_expert checks the schemas with.
Status check_sample_inputs(const std::vector<TensorSchema>& inputs, const std::string& source) {
  const protocol::Limits limits;
  if (inputs.empty() || inputs.size() > limits.max_tensors) {
    return invalid_argument_error(
        fmt::format("{}: {} inputs given (1 to {})", source, inputs.size(), limits.max_tensors));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (static_cast<uint8_t>(inputs[i].dtype) > quant::kMaxDTypeValue) {
      return invalid_argument_error(
          fmt::format("{}: input {} has dtype code {} (the wire carries {})", source, i,
                      static_cast<int>(inputs[i].dtype), kWireDTypes));
    }
    const std::vector<int64_t>& shape = inputs[i].shape;
    bool dims_ok = shape.size() <= limits.max_ndim;
    for (int64_t d : shape)
      dims_ok = dims_ok && d >= 1 && d <= limits.max_dim;
    if (!dims_ok) {
      return invalid_argument_error(fmt::format(
          "{}: input {} has per-sample shape {} (at most {} dimensions, each in [1, {}])", source,
          i, shape_text(shape), limits.max_ndim, limits.max_dim));
    }
  }
  return Status::ok();
}

// forward's result as tensors: a Tensor, or a tuple or list of Tensors.
Result<std::vector<torch::Tensor>> unpack_outputs(const c10::IValue& out) {
  if (out.isTensor()) return std::vector<torch::Tensor>{out.toTensor()};
  std::vector<torch::Tensor> tensors;
  auto take = [&](const c10::IValue& element, size_t i) -> Status {
    if (!element.isTensor()) {
      return invalid_argument_error(
          fmt::format("forward returned a {} whose element {} is a {}, not a Tensor", out.tagKind(),
                      i, element.tagKind()));
    }
    tensors.push_back(element.toTensor());
    return Status::ok();
  };
  if (out.isTuple()) {
    const auto& elements = out.toTupleRef().elements();
    for (size_t i = 0; i < elements.size(); ++i)
      HIVEMIND_RETURN_IF_ERROR(take(elements[i], i));
  } else if (out.isList()) {
    const c10::List<c10::IValue> list = out.toList();
    for (size_t i = 0; i < list.size(); ++i)
      HIVEMIND_RETURN_IF_ERROR(take(list.get(i), i));
  } else {
    return invalid_argument_error(fmt::format(
        "forward returned a {}, not a Tensor or a tuple/list of Tensors", out.tagKind()));
  }
  if (tensors.empty())
    return invalid_argument_error("forward returned an empty tuple/list (no output tensor)");
  return tensors;
}

// The output schema from forward's outputs on the probe batch.
Result<std::vector<TensorSchema>> output_schema_of(const std::vector<torch::Tensor>& outputs) {
  std::vector<TensorSchema> schemas;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const torch::Tensor& t = outputs[i];
    const std::vector<int64_t> sizes = t.sizes().vec();
    Result<quant::DType> dtype = schema_dtype(t.scalar_type());
    if (!dtype.is_ok()) {
      return invalid_argument_error(fmt::format("output {} is {} (the wire carries {})", i,
                                                dtype_name(t.scalar_type()), kWireDTypes));
    }
    if (t.dim() == 0 || sizes[0] != kProbeBatch) {
      return invalid_argument_error(fmt::format(
          "output {} has shape {} for a batch of {} samples: outputs must be batch-first with the "
          "inputs' batch size",
          i, shape_text(sizes), kProbeBatch));
    }
    TensorSchema schema;
    schema.dtype = *dtype;
    schema.shape.assign(sizes.begin() + 1, sizes.end());
    schemas.push_back(std::move(schema));
  }
  return schemas;
}

// A '.'-free name for nn::Module's registry (which refuses dots): "ffn.0.weight" ->
// "ffn__0__weight".
std::string registered_name(const std::string& dotted) {
  std::string out;
  for (char c : dotted) {
    if (c == '.') {
      out += "__";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

Result<std::shared_ptr<TorchScriptExpert>> TorchScriptExpert::load(const ExpertConfig& config) {
  if (config.module_path.empty()) {
    return invalid_argument_error(
        "the torchscript expert class needs the path of a TorchScript file (--module_path)");
  }
  const std::filesystem::path path = config.module_path;
  const std::string file = fmt::format("TorchScript file {}", path.string());
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status))
    return invalid_argument_error(fmt::format("{}: no such file", file));
  if (!std::filesystem::is_regular_file(status))
    return invalid_argument_error(fmt::format("{}: not a regular file", file));

  std::shared_ptr<TorchScriptExpert> expert(new TorchScriptExpert());
  expert->path_ = path;
  expert->reinit_ = config.reinit;
  torch::jit::ExtraFilesMap extra_files{{kTorchScriptMetadataFile, ""}};
  try {
    expert->scripted_ = torch::jit::load(path.string(), torch::Device(torch::kCPU), extra_files);
  } catch (const std::exception& e) {
    return invalid_argument_error(fmt::format(
        "{}: cannot be loaded as a TorchScript archive (write it with torch.jit.save of a "
        "torch.jit.script'ed or traced module): {}",
        file, error_text(e)));
  }
  torch::jit::Module& scripted = expert->scripted_;
  if (!scripted.find_method("forward")) {
    return invalid_argument_error(
        fmt::format("{}: the scripted module has no forward method", file));
  }

  std::vector<TensorSchema> inputs = config.sample_inputs;
  if (!inputs.empty()) {
    HIVEMIND_RETURN_IF_ERROR(check_sample_inputs(inputs, "--sample_input_shape"));
  } else {
    const std::string& json = extra_files[kTorchScriptMetadataFile];
    if (json.empty()) {
      return invalid_argument_error(fmt::format(
          "{}: it holds no {} and no sample input shape was given (--sample_input_shape, e.g. 512 "
          "or 128,512;512)",
          file, kTorchScriptMetadataFile));
    }
    HIVEMIND_ASSIGN_OR_RETURN(inputs, parse_torchscript_metadata(json, path.string()));
  }
  for (const TensorSchema& input : inputs)
    expert->inputs_.push_back({.dtype = input.dtype, .shape = input.shape});

  // The jit module's own tensors, registered by reference: nn::Module::to() moves a tensor with
  // set_data(), which swaps the storage of that very TensorImpl, so the jit module (holding the
  // same impl in its attribute slot) computes with the moved tensor too, and the optimizer's
  // updates to the registered parameters are the jit module's weights.
  std::set<std::string> taken;
  auto take_name = [&](const std::string& dotted, const char* kind) -> Result<std::string> {
    std::string name = registered_name(dotted);
    if (!taken.insert(name).second) {
      return invalid_argument_error(fmt::format(
          "{}: {} '{}' maps to the name '{}' that another parameter or buffer already has ('.' "
          "becomes \"__\"); rename one of them",
          file, kind, dotted, name));
    }
    return name;
  };
  try {
    for (const auto& named : scripted.named_parameters(/*recurse=*/true)) {
      HIVEMIND_ASSIGN_OR_RETURN(std::string name, take_name(named.name, "parameter"));
      expert->register_parameter(name, named.value, named.value.requires_grad());
    }
    for (const auto& named : scripted.named_buffers(/*recurse=*/true)) {
      HIVEMIND_ASSIGN_OR_RETURN(std::string name, take_name(named.name, "buffer"));
      expert->register_buffer(name, named.value);
    }
  } catch (const std::exception& e) {
    return invalid_argument_error(
        fmt::format("{}: cannot register its parameters: {}", file, error_text(e)));
  }

  // The output schema: one forward on a zero batch, as the server would run it, so a module that
  // cannot take its declared inputs is refused now, not on the first request.
  std::vector<std::string> probe_shapes;
  std::vector<torch::Tensor> probe;
  for (const TensorSchema& input : expert->inputs_) {
    std::vector<int64_t> batched{kProbeBatch};
    batched.insert(batched.end(), input.shape.begin(), input.shape.end());
    // Zeros are a valid value of every dtype: index 0 of an embedding, an all-false mask.
    probe.push_back(torch::zeros(batched, torch_dtype(input.dtype)));
    probe_shapes.push_back(
        fmt::format("{}{}", quant::dtype_name(input.dtype), shape_text(batched)));
  }
  const std::string tried =
      fmt::format("{} input(s): {}", probe.size(), fmt::join(probe_shapes, ", "));
  c10::IValue out;
  try {
    torch::NoGradGuard no_grad;
    out = scripted.forward(std::vector<c10::IValue>(probe.begin(), probe.end()));
  } catch (const std::exception& e) {
    return invalid_argument_error(fmt::format(
        "{}: forward fails on a zero batch of {} (does the sample input match the module? "
        "--sample_input_shape replaces the file's): {}",
        file, tried, error_text(e)));
  }
  auto outputs = unpack_outputs(out);
  if (!outputs.is_ok()) return outputs.status().with_context(file);
  auto schemas = output_schema_of(*outputs);
  if (!schemas.is_ok()) {
    return schemas.status().with_context(
        fmt::format("{} (forward on a zero batch of {})", file, tried));
  }
  expert->outputs_ = std::move(schemas).value();
  return expert;
}

std::vector<torch::Tensor> TorchScriptExpert::forward(const std::vector<torch::Tensor>& inputs) {
  c10::IValue out = scripted_.forward(std::vector<c10::IValue>(inputs.begin(), inputs.end()));
  // The load-time probe saw a Tensor or a tuple/list of them; a module whose output kind depends
  // on the data fails this batch only (ExpertBackend reports the exception as the call's error).
  Result<std::vector<torch::Tensor>> outputs = unpack_outputs(out);
  if (!outputs.is_ok()) throw std::invalid_argument(outputs.status().message());
  return std::move(outputs).value();
}

void TorchScriptExpert::initialize_parameters(at::Generator generator) {
  if (!reinit_) return;  // the file's weights: the same file gives the same weights on every host
  torch::NoGradGuard no_grad;
  // Scripted modules name parameters "<prefix>weight" / "<prefix>bias", as nn.Linear's.
  std::map<std::string, torch::Tensor> by_name;
  const auto named = scripted_.named_parameters(/*recurse=*/true);
  for (const auto& p : named)
    by_name.emplace(p.name, p.value);
  auto fan_in = [](const torch::Tensor& weight) { return weight.numel() / weight.size(0); };
  auto bound_for = [](int64_t fan) { return 1.0 / std::sqrt(static_cast<double>(fan)); };
  for (const auto& p : named) {
    torch::Tensor t = p.value;
    if (t.numel() == 0) continue;
    if (t.dim() >= 2) {
      const double bound = bound_for(fan_in(t));
      t.uniform_(-bound, bound, generator);
      continue;
    }
    const std::string& name = p.name;
    const std::string suffix = "bias";
    if (t.dim() != 1 || name.size() < suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    auto weight = by_name.find(name.substr(0, name.size() - suffix.size()) + "weight");
    if (weight == by_name.end() || weight->second.dim() < 2 || weight->second.numel() == 0)
      continue;
    const double bound = bound_for(fan_in(weight->second));
    t.uniform_(-bound, bound, generator);
  }
}

std::string torchscript_metadata_json(const std::vector<TensorSchema>& sample_inputs) {
  nlohmann::json inputs = nlohmann::json::array();
  for (const TensorSchema& input : sample_inputs) {
    inputs.push_back(
        {{"shape", input.shape}, {"dtype", std::string(quant::dtype_name(input.dtype))}});
  }
  return nlohmann::json{{"format", kTorchScriptMetadataFormat}, {"inputs", inputs}}.dump();
}

Result<std::vector<TensorSchema>> parse_torchscript_metadata(std::string_view json,
                                                             std::string_view file) {
  const std::string where =
      fmt::format("{} of TorchScript file {}", kTorchScriptMetadataFile, file);
  auto bad = [&](const std::string& what) {
    return invalid_argument_error(
        fmt::format("{}: {} (expected {{\"format\": 1, \"inputs\": [{{\"shape\": [512], \"dtype\": "
                    "\"float32\"}}]}})",
                    where, what));
  };
  if (json.size() > kMaxMetadataBytes)
    return bad(fmt::format("{} bytes (at most {})", json.size(), kMaxMetadataBytes));
  const nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return bad("not valid JSON");
  if (!doc.is_object()) return bad("not a JSON object");
  const auto format = doc.find("format");
  if (format == doc.end() || !format->is_number_integer()) return bad("no integer \"format\"");
  if (*format != kTorchScriptMetadataFormat) {
    return bad(fmt::format("format {} is not supported (this build reads format {})",
                           format->dump(), kTorchScriptMetadataFormat));
  }
  const auto inputs = doc.find("inputs");
  if (inputs == doc.end() || !inputs->is_array()) return bad("no \"inputs\" array");
  const protocol::Limits limits;
  if (inputs->empty() || inputs->size() > limits.max_tensors)
    return bad(fmt::format("{} inputs (1 to {})", inputs->size(), limits.max_tensors));
  std::vector<TensorSchema> schemas;
  for (size_t i = 0; i < inputs->size(); ++i) {
    const nlohmann::json& input = (*inputs)[i];
    if (!input.is_object()) return bad(fmt::format("input {} is not an object", i));
    const auto shape = input.find("shape");
    if (shape == input.end() || !shape->is_array())
      return bad(fmt::format("input {} has no \"shape\" array", i));
    if (shape->size() > limits.max_ndim) {
      return bad(fmt::format("input {} has {} dimensions (at most {})", i, shape->size(),
                             limits.max_ndim));
    }
    std::vector<int64_t> dims;
    for (const nlohmann::json& d : *shape) {
      // Unsigned first: a positive JSON integer is stored unsigned, a negative one signed.
      const bool ok = d.is_number_unsigned() && d.get<uint64_t>() >= 1 &&
                      d.get<uint64_t>() <= static_cast<uint64_t>(limits.max_dim);
      if (!ok) {
        return bad(fmt::format("input {} has dimension {} in its shape {} (integers in [1, {}])", i,
                               d.dump(), shape->dump(), limits.max_dim));
      }
      dims.push_back(static_cast<int64_t>(d.get<uint64_t>()));
    }
    const auto dtype = input.find("dtype");
    if (dtype == input.end() || !dtype->is_string())
      return bad(fmt::format("input {} has no \"dtype\" string", i));
    // Exactly the names the writer uses: a file is read the same way by every version.
    const std::optional<quant::DType> wire = quant::parse_dtype(dtype->get<std::string>());
    if (!wire) {
      return bad(fmt::format("input {} has dtype {} (one of {})", i, dtype->dump(), kWireDTypes));
    }
    schemas.push_back({.dtype = *wire, .shape = std::move(dims)});
  }
  return schemas;
}

Status save_torchscript_expert(const torch::jit::Module& module, const std::filesystem::path& file,
                               const std::vector<TensorSchema>& sample_inputs) {
  HIVEMIND_RETURN_IF_ERROR(check_sample_inputs(sample_inputs, "save_torchscript_expert"));
  if (!module.find_method("forward")) {
    return invalid_argument_error(
        fmt::format("save_torchscript_expert {}: the module has no forward method", file.string()));
  }
  try {
    const torch::jit::ExtraFilesMap extra{
        {kTorchScriptMetadataFile, torchscript_metadata_json(sample_inputs)}};
    module.save(file.string(), extra);
  } catch (const std::exception& e) {
    return unavailable_error(
        fmt::format("save_torchscript_expert {}: {}", file.string(), error_text(e)));
  }
  return Status::ok();
}

Status save_scripted_ffn(const std::filesystem::path& file, int64_t hidden_dim, uint64_t seed) {
  if (hidden_dim < 1 || hidden_dim > (int64_t{1} << 20))
    return invalid_argument_error(
        fmt::format("hidden_dim must be in [1, 2^20], got {}", hidden_dim));
  const int64_t h = hidden_dim;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto uniform = [&](std::vector<int64_t> shape, int64_t fan_in) {
    torch::NoGradGuard no_grad;
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    return torch::empty(shape).uniform_(-bound, bound, gen).requires_grad_(true);
  };
  try {
    torch::jit::Module module("hivemind_ffn");
    // In the zoo's Ffn order, so the parameter lists line up: its Linear(h, 4h), Linear(4h, h),
    // LayerNorm(h).
    module.register_parameter("ffn_weight", uniform({4 * h, h}, h), false);
    module.register_parameter("ffn_bias", uniform({4 * h}, h), false);
    module.register_parameter("ffn_output_weight", uniform({h, 4 * h}, 4 * h), false);
    module.register_parameter("ffn_output_bias", uniform({h}, 4 * h), false);
    module.register_parameter("layer_norm_weight", torch::ones({h}).requires_grad_(true), false);
    module.register_parameter("layer_norm_bias", torch::zeros({h}).requires_grad_(true), false);
    module.define(fmt::format(R"(
def forward(self, x):
    hidden = torch.gelu(torch.linear(x, self.ffn_weight, self.ffn_bias), approximate="tanh")
    y = torch.linear(hidden, self.ffn_output_weight, self.ffn_output_bias)
    return torch.layer_norm(x + y, [{}], self.layer_norm_weight, self.layer_norm_bias, 1e-12)
)",
                              h));
    return save_torchscript_expert(module, file, {{.shape = {h}}});
  } catch (const std::exception& e) {
    return internal_error(fmt::format("save_scripted_ffn {}: {}", file.string(), error_text(e)));
  }
}

}  // namespace hivemind::runtime
