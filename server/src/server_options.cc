#include <algorithm>
#include <cctype>
#include <cmath>
#include <random>
#include <set>

#include <fmt/format.h>
#include <torch/cuda.h>

#include <hivemind/common/env.h>
#include <hivemind/common/expert_uid.h>
#include <hivemind/common/initial_peers.h>
#include <hivemind/common/text.h>
#include <hivemind/dht/uid_pattern.h>
#include <hivemind/runtime/expert_registry.h>
#include <hivemind/runtime/pinning.h>
#include <hivemind/runtime/tensor_schema.h>
#include <hivemind/runtime/torchscript_expert.h>
#include <hivemind/server/server_options.h>

namespace hivemind::server {

Result<std::vector<std::string>> expand_expert_pattern(std::string_view pattern, int num_experts,
                                                       uint64_t seed) {
  if (num_experts < 0) return invalid_argument_error("--num_experts must be >= 0");
  auto uids = dht::expand_uid_pattern(pattern, num_experts, seed);
  if (!uids.is_ok()) return uids.status().with_context("--expert_pattern");
  return uids;
}

Result<std::vector<std::string>> server_expert_uids(const ServerOptions& o) {
  if (!o.expert_uids.empty()) return o.expert_uids;
  std::random_device entropy;
  const uint64_t seed = (static_cast<uint64_t>(entropy()) << 32) ^ entropy();
  return expand_expert_pattern(o.expert_pattern, o.num_experts, seed);
}

Result<std::vector<runtime::TensorSchema>> parse_sample_inputs(std::string_view text) {
  auto bad = [&](const std::string& what) {
    return invalid_argument_error(fmt::format(
        "--sample_input_shape '{}': {} (per input, an optional dtype and ':', then its per-sample "
        "dimensions joined by ','; inputs joined by ';': e.g. 512, 128,512 or int64:16;512)",
        text, what));
  };
  auto trimmed = [](std::string_view part) {
    while (!part.empty() && (part.front() == ' ' || part.front() == '\t'))
      part.remove_prefix(1);
    while (!part.empty() && (part.back() == ' ' || part.back() == '\t'))
      part.remove_suffix(1);
    return part;
  };
  // One input's per-sample dimensions, "128,512"; `index` names the input in errors.
  auto parse_dims = [&](std::string_view dims_text, size_t index) -> Result<std::vector<int64_t>> {
    std::vector<int64_t> dims;
    size_t dim_start = 0;
    while (true) {
      const size_t dim_end = std::min(dims_text.find(',', dim_start), dims_text.size());
      const std::string_view dim = trimmed(dims_text.substr(dim_start, dim_end - dim_start));
      const bool digits =
          !dim.empty() && dim.size() <= 9 && std::all_of(dim.begin(), dim.end(), [](char c) {
            return std::isdigit(static_cast<unsigned char>(c));
          });
      if (!digits || std::stoll(std::string(dim)) < 1) {
        return bad(fmt::format("input {} has dimension '{}', not a positive integer below 10^9",
                               index, dim));
      }
      dims.push_back(std::stoll(std::string(dim)));
      if (dim_end == dims_text.size()) return dims;
      dim_start = dim_end + 1;
    }
  };
  std::vector<runtime::TensorSchema> inputs;
  size_t input_start = 0;
  while (true) {
    const size_t input_end = std::min(text.find(';', input_start), text.size());
    std::string_view input = text.substr(input_start, input_end - input_start);
    quant::DType dtype = quant::DType::kFloat32;
    bool typed = false;
    if (const size_t colon = input.find(':'); colon != std::string_view::npos) {
      const std::string_view name = trimmed(input.substr(0, colon));
      const std::optional<quant::DType> named = quant::parse_dtype(name);
      if (!named) {
        return bad(fmt::format(
            "input {} has dtype '{}' (float32, float16, bfloat16, int64, int32, uint8 or bool)",
            inputs.size(), name));
      }
      dtype = *named;
      typed = true;
      input.remove_prefix(colon + 1);
    }
    std::vector<int64_t> dims;  // stays empty for "bool:": one value per sample
    if (!typed || !trimmed(input).empty()) {
      HIVEMIND_ASSIGN_OR_RETURN(dims, parse_dims(input, inputs.size()));
    }
    inputs.push_back({.dtype = dtype, .shape = std::move(dims)});
    if (input_end == text.size()) break;
    input_start = input_end + 1;
  }
  return inputs;
}

std::string format_sample_inputs(const std::vector<runtime::TensorSchema>& inputs) {
  std::vector<std::string> parts;
  for (const runtime::TensorSchema& input : inputs) {
    const bool implicit = input.dtype == quant::DType::kFloat32 && !input.shape.empty();
    const std::string dtype = implicit ? "" : fmt::format("{}:", quant::dtype_name(input.dtype));
    parts.push_back(fmt::format("{}{}", dtype, fmt::join(input.shape, ",")));
  }
  return fmt::format("{}", fmt::join(parts, ";"));
}

runtime::ExpertConfig expert_config(const ServerOptions& o) {
  runtime::ExpertConfig config;
  config.cls = o.expert_cls;
  config.hidden_dim = o.hidden_dim;
  config.seq_len = o.seq_len;
  config.module_path = o.module_path;
  config.reinit = o.reinit;
  config.sample_inputs = o.sample_inputs;
  return config;
}

double effective_expiration(const ServerOptions& o) {
  return o.expiration > 0 ? o.expiration : std::max(2 * o.update_period, 3.0);
}

Status validate(const ServerOptions& o) {
  std::vector<std::string> problems;
  auto need = [&](bool ok, std::string what) {
    if (!ok) problems.push_back(std::move(what));
  };
  need(runtime::is_expert_class(o.expert_cls),
       fmt::format("--expert_cls '{}' is unknown; use one of: {} (a C++ program adds its own "
                   "with runtime::register_expert_class)",
                   o.expert_cls, fmt::join(runtime::expert_classes(), ", ")));
  need(o.hidden_dim >= 1 && o.hidden_dim <= (1 << 20),
       fmt::format("--hidden_dim ({}) must be in [1, 1048576]", o.hidden_dim));
  need(o.seq_len >= 1, fmt::format("--seq_len ({}) must be >= 1", o.seq_len));
  if (o.expert_cls == runtime::kTorchScriptExpertClass) {
    need(!o.module_path.empty(),
         "--expert_cls torchscript needs --module_path, the TorchScript file of the expert");
  } else {
    const std::string only = fmt::format(
        "only applies with --expert_cls torchscript (the expert class is '{}')", o.expert_cls);
    need(o.module_path.empty(), "--module_path " + only);
    need(!o.reinit, "--reinit " + only);
    need(o.sample_inputs.empty(), "--sample_input_shape " + only);
  }
  if (o.expert_uids.empty() == o.expert_pattern.empty()) {
    problems.push_back(
        "give exactly one of --expert_uids and --expert_pattern (e.g. --expert_pattern "
        "'expert.[0:4].[0:4]')");
  }
  std::set<std::string> seen;
  for (const std::string& uid : o.expert_uids) {
    need(is_valid_uid(uid),
         fmt::format("--expert_uids: '{}' is not a uid of the form name.i.j (e.g. expert.0.3, at "
                     "most {} bytes)",
                     uid, kMaxUidBytes));
    need(seen.insert(uid).second, fmt::format("--expert_uids: '{}' is listed twice", uid));
  }
  if (!o.expert_pattern.empty()) {
    auto uids = expand_expert_pattern(o.expert_pattern, o.num_experts, 0);
    if (!uids.is_ok()) problems.push_back(uids.status().message());
  } else {
    need(o.num_experts == 0, "--num_experts only applies with --expert_pattern");
  }
  need(o.max_batch_size >= 1, fmt::format("--max_batch_size ({}) must be >= 1", o.max_batch_size));
  need(o.min_batch_size >= 1 && o.min_batch_size <= o.max_batch_size,
       fmt::format("--min_batch_size ({}) must be in [1, --max_batch_size ({})]", o.min_batch_size,
                   o.max_batch_size));
  need(o.batch_timeout_ms >= 0, "--batch_timeout_ms must be >= 0");
  const std::vector<std::string> devices = split_list(o.device);
  need(!devices.empty(), "--device names no device (e.g. auto, cpu, cuda:0 or cuda:0,cuda:1)");
  need(o.device == "auto" || std::find(devices.begin(), devices.end(), "auto") == devices.end(),
       fmt::format("--device '{}': auto stands alone (it picks cuda or cpu)", o.device));
  for (const std::string& d : devices) {
    if (d == "auto") continue;
    auto device = runtime::compute_device_from_string(d);
    if (!device.is_ok()) problems.push_back("--device: " + device.status().message());
  }
  need(o.optimizer == "sgd" || o.optimizer == "adam" || o.optimizer == "adamw" ||
           o.optimizer == "none",
       fmt::format("--optimizer '{}' is unknown; use sgd, adam, adamw or none", o.optimizer));
  need(std::isfinite(o.lr) && o.lr >= 0,
       fmt::format("--lr ({}) must be a finite number >= 0", o.lr));
  need(o.momentum >= 0 && o.weight_decay >= 0 && o.clip_grad_norm >= 0,
       "--momentum, --weight_decay and --clip_grad_norm must be >= 0");
  need(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
       fmt::format("--beta1 ({}) and --beta2 ({}) must be in [0, 1)", o.beta1, o.beta2));
  need(std::isfinite(o.eps) && o.eps > 0,
       fmt::format("--eps ({}) must be a finite number > 0", o.eps));
  need(o.scheduler == "linear" || o.scheduler == "none",
       fmt::format("--scheduler '{}' is unknown; use linear (warm-up and decay by --warmup_steps "
                   "and --total_steps) or none (constant lr)",
                   o.scheduler));
  need(o.warmup_steps >= 0 && o.total_steps >= 0, "--warmup_steps and --total_steps must be >= 0");
  need(o.intra_op_threads >= 1 && o.intra_op_threads <= 1024,
       fmt::format("--intra_op_threads ({}) must be in [1, 1024]", o.intra_op_threads));
  need(runtime::parse_compression(o.compression).has_value(),
       fmt::format("--compression '{}' is unknown; use none, float16, bfloat16, block_absmax_u8 "
                   "(BLOCKWISE_8BIT), "
                   "per_tensor_absmax_u8 (UNIFORM_8BIT) or block_affine_u8",
                   o.compression));
  need(!o.host.empty(), "--host must not be empty (0.0.0.0 listens everywhere)");
  need(o.port >= 0 && o.port <= 65535, fmt::format("--port ({}) must be in [0, 65535]", o.port));
  need(o.transport == "auto" || o.transport == "tcp" || o.transport == "ucx",
       fmt::format("--transport '{}' is unknown; use auto, tcp or ucx", o.transport));
  for (const std::string& peer : o.initial_peers) {
    if (peer == "auto") continue;  // resolved when the server joins (it needs the Slurm allocation)
    auto address = parse_peer_address(peer);
    if (!address.is_ok()) problems.push_back("--initial_peers: " + address.status().message());
  }
  need(o.bootstrap_timeout > 0,
       fmt::format("--bootstrap_timeout ({}) must be > 0 seconds", o.bootstrap_timeout));
  need(o.update_period > 0,
       fmt::format("--update_period ({}) must be > 0 seconds", o.update_period));
  need(o.expiration >= 0, "--expiration must be >= 0 seconds (0: twice --update_period)");
  need(o.expiration == 0 || o.expiration > o.update_period,
       fmt::format("--expiration ({}) must exceed --update_period ({}) or experts vanish between "
                   "declarations",
                   o.expiration, o.update_period));
  need(o.checkpoint_interval > 0, "--checkpoint_interval must be > 0 seconds");
  need(o.stats_report_interval >= 0, "--stats_report_interval must be >= 0 seconds (0: off)");
  need(o.grace_period > 0, "--grace_period must be > 0 seconds");
  need(o.metrics_port >= -1 && o.metrics_port <= 65535,
       fmt::format("--metrics-port ({}) must be in [0, 65535], or -1 for none", o.metrics_port));
  need(!o.metrics_host.empty(), "--metrics-host must not be empty (127.0.0.1: this host only)");
  need(o.cpu_bind == "auto" || o.cpu_bind == "none",
       fmt::format("--cpu_bind '{}': use auto or none", o.cpu_bind));
  if (!o.cpu_cores.empty()) {
    auto cores = runtime::parse_cpu_list(o.cpu_cores);
    if (!cores.is_ok()) problems.push_back("--cpu_cores: " + cores.status().message());
  }
  if (problems.empty()) return Status::ok();
  return invalid_argument_error(fmt::format("{}", fmt::join(problems, "\n")));
}

DeviceChoice choose_device(const std::string& device, bool cuda_visible) {
  if (device != "auto") return {device, "as given"};
  if (cuda_visible) return {"cuda", "auto: a CUDA device is visible"};
  return {"cpu", "auto: no CUDA device visible (or LibTorch was built without CUDA)"};
}

bool cuda_device_visible() {
  return torch::cuda::is_available();
}

}  // namespace hivemind::server
