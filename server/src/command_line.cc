#include <algorithm>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <hivemind/common/env.h>
#include <hivemind/common/version.h>
#include <hivemind/runtime/expert_registry.h>
#include <hivemind/server/command_line.h>

namespace hivemind::server {

namespace {

struct Entry {
  CLI::Option* option;
  std::string key;  // "expert_cls"
  bool is_list = false;
  bool is_string = false;
  bool is_flag = false;
};

std::vector<std::string> split_list(const std::string& value) {
  std::vector<std::string> out;
  std::stringstream in(value);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string toml_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

ParsedCommandLine parse_command_line(
    const std::vector<std::string>& args,
    const std::function<std::optional<std::string>(const std::string&)>& env) {
  ParsedCommandLine parsed;
  ServerOptions& o = parsed.options;
  CLI::App app{
      "hivemind-server: hosts Mixture-of-Experts experts, batches their requests, trains them "
      "with\n"
      "each backward pass, and announces them in the DHT.\n"
      "Every option is also an environment variable HIVEMIND_<NAME> and a key of the --config "
      "file;\n"
      "precedence: flag > environment > config file > default.",
      "hivemind-server"};
  app.get_formatter()->column_width(40);
  std::vector<Entry> entries;
  auto names = [](const std::string& key) {
    std::string dashed = key;
    std::replace(dashed.begin(), dashed.end(), '_', '-');
    return dashed == key ? "--" + key : "--" + key + ",--" + dashed;
  };
  auto describe = [](const std::string& key, const std::string& text) {
    return fmt::format("{} [env {}]", text, env_name_for_flag(key));
  };
  auto add = [&](const std::string& key, auto& target, const std::string& text) -> CLI::Option* {
    CLI::Option* opt =
        app.add_option(names(key), target, describe(key, text))->capture_default_str();
    using T = std::decay_t<decltype(target)>;
    Entry e{opt, key};
    e.is_list = std::is_same_v<T, std::vector<std::string>>;
    e.is_string = std::is_same_v<T, std::string>;
    if (e.is_list) opt->delimiter(',');
    entries.push_back(e);
    return opt;
  };
  // ---- experts ----
  // The classes registered when the command line is parsed: the zoo's and the program's own.
  const std::vector<std::string> classes = runtime::expert_classes();
  add("expert_cls", o.expert_cls,
      fmt::format("expert block: {} (ffn_v08: hivemind v0.8's ffn)", fmt::join(classes, ", ")))
      ->check(CLI::IsMember(classes));
  add("hidden_dim", o.hidden_dim, "hidden size of every expert")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  add("seq_len", o.seq_len, "sequence length of the transformer expert's input")
      ->check(CLI::PositiveNumber);
  add("expert_uids", o.expert_uids, "uids to host, e.g. expert.0.0,expert.0.1 (or several values)");
  add("expert_pattern", o.expert_pattern, "uid grid to host, e.g. 'expert.[0:4].[0:4]'");
  add("num_experts", o.num_experts,
      "with --expert_pattern: how many uids to pick at random (0: the whole grid)")
      ->check(CLI::NonNegativeNumber);
  add("seed", o.seed,
      "base seed of the initial weights (trainers rebuild them with the same seed)");
  // ---- batching ----
  add("max_batch_size", o.max_batch_size, "most samples per batch and per request")
      ->check(CLI::PositiveNumber);
  add("min_batch_size", o.min_batch_size, "samples a batch waits for (at most --batch_timeout_ms)")
      ->check(CLI::PositiveNumber);
  add("batch_timeout_ms", o.batch_timeout_ms, "how long a batch waits for --min_batch_size")
      ->check(CLI::NonNegativeNumber);
  // ---- compute ----
  add("device", o.device, "cpu, cuda, cuda:N, or a comma list (experts spread round-robin)");
  add("optimizer", o.optimizer, "sgd, adam, adamw or none")
      ->check(CLI::IsMember({"sgd", "adam", "adamw", "none"}));
  add("lr", o.lr, "learning rate")->check(CLI::NonNegativeNumber);
  add("momentum", o.momentum, "SGD momentum")->check(CLI::NonNegativeNumber);
  add("weight_decay", o.weight_decay, "weight decay")->check(CLI::NonNegativeNumber);
  add("clip_grad_norm", o.clip_grad_norm, "clip the gradient norm before each step (0: off)")
      ->check(CLI::NonNegativeNumber);
  add("warmup_steps", o.warmup_steps, "linear learning-rate warm-up steps")
      ->check(CLI::NonNegativeNumber);
  add("total_steps", o.total_steps, "steps of the linear decay to 0 after warm-up (0: no decay)")
      ->check(CLI::NonNegativeNumber);
  add("intra_op_threads", o.intra_op_threads, "LibTorch threads per compute thread")
      ->check(CLI::Range(1, 1024));
  CLI::Option* anomalies =
      app.add_flag(names("detect_anomalies"), o.detect_anomalies,
                   describe("detect_anomalies", "refuse NaN/Inf inputs and outputs"));
  entries.push_back({anomalies, "detect_anomalies", false, false, true});
  add("compression", o.compression,
      "wire compression: none, float16, bfloat16, block_absmax_u8 (= BLOCKWISE_8BIT), "
      "per_tensor_absmax_u8 "
      "(= UNIFORM_8BIT), block_affine_u8");
  // ---- network ----
  add("host", o.host, "listen host (0.0.0.0: all interfaces; a routable address is announced)");
  add("port", o.port, "listen port (0: any free port)")->check(CLI::Range(0, 65535));
  add("transport", o.transport, "auto (UCX, else TCP), tcp or ucx")
      ->check(CLI::IsMember({"auto", "tcp", "ucx"}));
  add("initial_peers", o.initial_peers, "DHT peers to join (addresses); none: start a new swarm");
  add("update_period", o.update_period, "seconds between declarations of the experts to the DHT")
      ->check(CLI::PositiveNumber);
  add("expiration", o.expiration, "seconds a declaration lives (0: max(2 * update_period, 3))")
      ->check(CLI::NonNegativeNumber);
  add("swarm_key_file", o.swarm_key_file,
      "swarm key (a 0600 file from hivemind-info --new-swarm-key): only peers with the same key "
      "may connect (empty: anyone who can reach the port)");
  // ---- operations ----
  add("checkpoint_dir", o.checkpoint_dir, "per-expert checkpoints <dir>/<uid>.pt, loaded at start");
  add("checkpoint_interval", o.checkpoint_interval, "seconds between periodic checkpoints")
      ->check(CLI::PositiveNumber);
  add("stats_report_interval", o.stats_report_interval, "seconds between stats lines (0: off)")
      ->check(CLI::NonNegativeNumber);
  add("grace_period", o.grace_period, "SIGTERM: seconds to drain, checkpoint and exit")
      ->check(CLI::PositiveNumber);
  add("cpu_bind", o.cpu_bind, "auto (hwloc placement next to the device) or none")
      ->check(CLI::IsMember({"auto", "none"}));
  add("cpu_cores", o.cpu_cores, "restrict thread placement to these CPUs, e.g. 0-15");
  add("metrics_port", o.metrics_port,
      "serve Prometheus metrics at http://<metrics_host>:<port>/metrics (0: any "
      "free port, -1: off)")
      ->check(CLI::Range(-1, 65535));
  add("metrics_host", o.metrics_host,
      "address the metrics endpoint listens on (0.0.0.0: every interface)");

  // hivemind's --num_handlers sized its pool of connection-handler processes; here one transport
  // I/O thread serves every connection, so the flag is accepted (scripts written for hivemind keep
  // working) and has no effect.
  int num_handlers = 0;
  add("num_handlers", num_handlers,
      "accepted for hivemind compatibility; no effect (one I/O thread serves all)")
      ->check(CLI::NonNegativeNumber);

  std::string config_path;
  bool print_config = false;
  app.add_option("--config,-c", config_path,
                 "config file: TOML/INI lines 'name = value' with the flag names as keys")
      ->check(CLI::ExistingFile);
  app.add_flag("--print-config,--print_config", print_config,
               "print the effective configuration (a valid config file) and exit");
  bool print_version = false;
  app.add_flag("--version", print_version, "print the program's version and exit");

  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    parsed.exit_now = true;
    parsed.output = app.help();
    return parsed;
  } catch (const CLI::ParseError& e) {
    parsed.exit_now = true;
    parsed.exit_code = 2;
    parsed.output =
        fmt::format("hivemind-server: {}\nRun with --help for the list of options.\n", e.what());
    return parsed;
  }
  if (print_version) {
    // Before the layers below: the version needs no valid configuration.
    parsed.exit_now = true;
    parsed.output = version_line("hivemind-server") + "\n";
    return parsed;
  }

  // Lower layers for options the command line did not set: the environment, then the config file.
  std::map<std::string, std::vector<std::string>> config;
  if (!config_path.empty()) {
    try {
      for (const CLI::ConfigItem& item : CLI::ConfigTOML().from_file(config_path)) {
        if (item.name == "++" || item.name == "--") continue;  // section markers of CLI11's parser
        config[item.fullname()] = item.inputs;
      }
    } catch (const CLI::Error& e) {
      parsed.exit_now = true;
      parsed.exit_code = 2;
      parsed.output = fmt::format("hivemind-server: config file {}: {}\n", config_path, e.what());
      return parsed;
    }
  }
  std::map<std::string, std::string> source;
  std::vector<std::string> problems;
  for (const Entry& e : entries) {
    if (e.option->count() > 0) {
      source[e.key] = "flag";
      continue;
    }
    std::vector<std::string> values;
    std::string from;
    const std::string var = env_name_for_flag(e.key);
    if (auto value = env(var)) {
      values = e.is_list ? split_list(*value) : std::vector<std::string>{*value};
      from = "env " + var;
    } else if (auto it = config.find(e.key); it != config.end()) {
      values = it->second;
      from = "config " + config_path;
    } else {
      std::string dashed = e.key;
      std::replace(dashed.begin(), dashed.end(), '_', '-');
      if (auto it2 = config.find(dashed); it2 != config.end()) {
        values = it2->second;
        from = "config " + config_path;
      }
    }
    if (from.empty()) {
      source[e.key] = "default";
      continue;
    }
    try {
      if (e.is_flag) {
        auto b = parse_bool(values.empty() ? "" : values[0]);
        if (!b.is_ok()) throw CLI::ConversionError(e.key, values);
        o.detect_anomalies = *b;
      } else {
        e.option->add_result(values);
        e.option->run_callback();
      }
      source[e.key] = from;
    } catch (const CLI::Error& err) {
      problems.push_back(fmt::format("{} ({}): {}", e.key, from, err.what()));
    }
  }
  for (const auto& [key, values] : config) {
    std::string underscored = key;
    std::replace(underscored.begin(), underscored.end(), '-', '_');
    bool known = std::any_of(entries.begin(), entries.end(),
                             [&](const Entry& e) { return e.key == underscored; });
    if (!known)
      problems.push_back(fmt::format("config file {}: unknown key '{}' (keys are the flag names)",
                                     config_path, key));
  }
  if (problems.empty()) {
    Status valid = validate(o);
    if (!valid.is_ok()) problems.push_back(valid.message());
  }
  if (!problems.empty()) {
    parsed.exit_now = true;
    parsed.exit_code = 2;
    std::vector<std::string> lines;
    for (const std::string& p : problems) {
      std::stringstream in(p);
      std::string line;
      while (std::getline(in, line))
        lines.push_back(line);
    }
    parsed.output =
        fmt::format("hivemind-server: invalid configuration:\n  {}\n", fmt::join(lines, "\n  "));
    return parsed;
  }
  if (print_config) {
    std::string out = "# hivemind-server effective configuration (usable with --config)\n";
    for (const Entry& e : entries) {
      std::string value;
      if (e.is_flag) {
        value = o.detect_anomalies ? "true" : "false";
      } else if (e.is_list) {
        std::vector<std::string> items;
        for (const std::string& v : e.option->as<std::vector<std::string>>())
          items.push_back(toml_quote(v));
        value = fmt::format("[{}]", fmt::join(items, ", "));
      } else {
        value = e.option->count() > 0 ? e.option->as<std::string>() : e.option->get_default_str();
        if (e.is_string) value = toml_quote(value);
      }
      out += fmt::format("{} = {}  # {}\n", e.key, value, source[e.key]);
    }
    parsed.exit_now = true;
    parsed.output = out;
  }
  return parsed;
}

}  // namespace hivemind::server
