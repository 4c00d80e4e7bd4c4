#include <algorithm>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <hivemind/common/env.h>
#include <hivemind/common/version.h>
#include <hivemind/runtime/expert_registry.h>
#include <hivemind/server/command_line.h>

#include "config_file.h"

namespace hivemind::server {

namespace {

struct Entry {
  CLI::Option* option = nullptr;
  std::string key;  // "expert_cls"
  bool is_list = false;
  bool is_string = false;
  bool* flag = nullptr;  // a boolean flag's target (a flag is set from the lower layers by hand)
  std::vector<std::string> aliases;  // hivemind's names for it ("num_warmup_steps"), also keys
  bool hivemind_only = false;        // read for hivemind's scripts; --print-config leaves it out
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

// Flags of hivemind's run_server.py that name something this engine does differently. They are
// accepted (flag, HIVEMIND_<NAME>, config key) so hivemind's scripts and config.yml keep working,
// and answered: an error that says what to use instead, or a notice that says what happens.
struct HivemindOnlyOptions {
  std::string custom_module_path;  // hivemind: a Python file registering nn.Module classes
  std::string identity_path;       // hivemind: the libp2p private key of the peer
};

Entry hivemind_only_entry(CLI::Option* option, std::string key) {
  Entry e;
  e.option = option;
  e.key = std::move(key);
  e.is_string = true;
  e.hivemind_only = true;
  return e;
}

void add_hivemind_only_options(CLI::App& app, HivemindOnlyOptions& h, std::vector<Entry>& entries) {
  CLI::Option* custom = app.add_option(
      "--custom_module_path,--custom-module-path", h.custom_module_path,
      "hivemind's Python expert classes: refused; script the module and use --expert_cls "
      "torchscript --module_path FILE (docs/experts.md)");
  entries.push_back(hivemind_only_entry(custom, "custom_module_path"));
  CLI::Option* identity =
      app.add_option("--identity_path,--identity-path", h.identity_path,
                     "accepted for hivemind compatibility; no effect (peers here are identified "
                     "by their address, not by a key)");
  entries.push_back(hivemind_only_entry(identity, "identity_path"));
}

// Problems and notices for what add_hivemind_only_options read.
void answer_hivemind_only_options(const HivemindOnlyOptions& h, std::vector<std::string>& problems,
                                  std::vector<std::string>& notices) {
  if (!h.custom_module_path.empty()) {
    problems.push_back(fmt::format(
        "--custom_module_path '{}': hivemind's Python expert classes do not run in this server; "
        "script your module with TorchScript and host it with --expert_cls torchscript "
        "--module_path FILE.pt (see docs/experts.md)",
        h.custom_module_path));
  }
  if (!h.identity_path.empty()) {
    notices.push_back(
        fmt::format("--identity_path '{}' is ignored: peers here are identified by their address "
                    "(tcp://host:port), not by a libp2p key",
                    h.identity_path));
  }
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
  auto add = [&](const std::string& key, auto& target, const std::string& text,
                 std::vector<std::string> aliases = {}) -> CLI::Option* {
    std::string all_names = names(key);
    for (const std::string& alias : aliases)
      all_names += ",--" + alias;
    CLI::Option* opt =
        app.add_option(all_names, target, describe(key, text))->capture_default_str();
    using T = std::decay_t<decltype(target)>;
    Entry e;
    e.option = opt;
    e.key = key;
    e.aliases = std::move(aliases);
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
  add("module_path", o.module_path,
      "--expert_cls torchscript: the TorchScript file of the expert (torch.jit.save)");
  auto add_flag = [&](const std::string& key, bool& target, const std::string& text) {
    CLI::Option* opt = app.add_flag(names(key), target, describe(key, text));
    Entry e;
    e.option = opt;
    e.key = key;
    e.flag = &target;
    entries.push_back(e);
  };
  add_flag("reinit", o.reinit,
           "--expert_cls torchscript: initial weights from --seed (per uid), not the file's");
  // Parsed into o.sample_inputs once every layer has been read.
  std::string sample_input_shape;
  add("sample_input_shape", sample_input_shape,
      "--expert_cls torchscript: per input an optional dtype and ':', then its per-sample dims "
      "joined by ','; inputs joined by ';' (e.g. 512, 128,512 or int64:16;512); default: the "
      "file's hivemind_expert.json");
  // ---- batching ----
  add("max_batch_size", o.max_batch_size, "most samples per batch and per request")
      ->check(CLI::PositiveNumber);
  add("min_batch_size", o.min_batch_size, "samples a batch waits for (at most --batch_timeout_ms)")
      ->check(CLI::PositiveNumber);
  add("batch_timeout_ms", o.batch_timeout_ms, "how long a batch waits for --min_batch_size")
      ->check(CLI::NonNegativeNumber);
  // ---- compute ----
  // The program picks the GPU when there is one, as hivemind's server does; ServerOptions itself
  // defaults to cpu for embedders (server_options.h).
  o.device = "auto";
  add("device", o.device,
      "auto (cuda when a CUDA device is visible, else cpu; logged at start), cpu, cuda, cuda:N, "
      "or a comma list (experts spread round-robin)");
  add("optimizer", o.optimizer, "sgd, adam, adamw or none")
      ->check(CLI::IsMember({"sgd", "adam", "adamw", "none"}));
  add("lr", o.lr, "learning rate")->check(CLI::NonNegativeNumber);
  add("momentum", o.momentum, "SGD momentum")->check(CLI::NonNegativeNumber);
  add("beta1", o.beta1, "Adam/AdamW: decay of the gradient's running mean (torch's betas[0])");
  add("beta2", o.beta2, "Adam/AdamW: decay of the squared gradient's running mean (betas[1])");
  add("eps", o.eps, "Adam/AdamW: term added to the denominator");
  add("weight_decay", o.weight_decay, "weight decay")->check(CLI::NonNegativeNumber);
  add("clip_grad_norm", o.clip_grad_norm, "clip the gradient norm before each step (0: off)")
      ->check(CLI::NonNegativeNumber);
  add("scheduler", o.scheduler,
      "learning-rate schedule: linear (warm-up, then decay, by the two flags below) or none "
      "(constant lr; the two flags are ignored)")
      ->check(CLI::IsMember({"linear", "none"}));
  add("warmup_steps", o.warmup_steps, "linear learning-rate warm-up steps", {"num_warmup_steps"})
      ->check(CLI::NonNegativeNumber);
  add("total_steps", o.total_steps, "steps of the linear decay to 0 after warm-up (0: no decay)",
      {"num_training_steps"})
      ->check(CLI::NonNegativeNumber);
  add("intra_op_threads", o.intra_op_threads, "LibTorch threads per compute thread")
      ->check(CLI::Range(1, 1024));
  add_flag("detect_anomalies", o.detect_anomalies, "refuse NaN/Inf inputs and outputs");
  add("compression", o.compression,
      "wire compression: none, float16, bfloat16, block_absmax_u8 (= BLOCKWISE_8BIT), "
      "per_tensor_absmax_u8 "
      "(= UNIFORM_8BIT), block_affine_u8");
  // ---- network ----
  add("host", o.host, "listen host (0.0.0.0: all interfaces; a routable address is announced)");
  add("port", o.port, "listen port (0: any free port)")->check(CLI::Range(0, 65535));
  add("transport", o.transport, "auto (UCX, else TCP), tcp or ucx")
      ->check(CLI::IsMember({"auto", "tcp", "ucx"}));
  add("initial_peers", o.initial_peers,
      "DHT peers to join: tcp://HOST:PORT, /ip4/HOST/tcp/PORT[/p2p/ID], or auto (the head node "
      "of the Slurm allocation, port 31337); none: start a new swarm");
  add("bootstrap_file", o.bootstrap_file,
      "also join the peers listed in this file (written by hivemind-dht --bootstrap_file), "
      "waiting for it");
  add("bootstrap_timeout", o.bootstrap_timeout, "seconds to wait for --bootstrap_file")
      ->check(CLI::PositiveNumber);
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

  HivemindOnlyOptions hivemind_only;
  add_hivemind_only_options(app, hivemind_only, entries);

  std::string config_path;
  bool print_config = false;
  app.add_option("--config,-c", config_path,
                 "config file with the flag names as keys: 'name = value' lines, or hivemind's "
                 "YAML 'name: value'")
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
  ConfigFile config;
  if (!config_path.empty()) {
    auto read = read_config_file(config_path);
    if (!read.is_ok()) {
      parsed.exit_now = true;
      parsed.exit_code = 2;
      parsed.output = fmt::format("hivemind-server: {}\n", read.status().message());
      return parsed;
    }
    config = std::move(read).value();
  }
  // The config key an entry was given under: its name, dashed or underscored, or an alias.
  auto find_in_config = [&](const Entry& e) {
    std::vector<std::string> keys = {e.key};
    std::string dashed = e.key;
    std::replace(dashed.begin(), dashed.end(), '_', '-');
    keys.push_back(dashed);
    keys.insert(keys.end(), e.aliases.begin(), e.aliases.end());
    for (const std::string& key : keys) {
      if (auto it = config.find(key); it != config.end()) return it;
    }
    return config.end();
  };
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
    } else if (auto it = find_in_config(e); it != config.end()) {
      values = it->second.values;
      from = fmt::format("config {}:{}", config_path, it->second.line);
      if (values.empty()) {  // "key: []", or "key:" with no "- item" lines: an empty list
        if (!e.is_list) {
          problems.push_back(fmt::format("{} ({}): a list where one value belongs", e.key, from));
          continue;
        }
        source[e.key] = from;
        continue;
      }
      if (it->second.is_list && !e.is_list && values.size() != 1) {
        problems.push_back(
            fmt::format("{} ({}): {} values where one belongs", e.key, from, values.size()));
        continue;
      }
    }
    if (from.empty()) {
      source[e.key] = "default";
      continue;
    }
    try {
      if (e.flag != nullptr) {
        auto b = parse_bool(values.empty() ? "" : values[0]);
        if (!b.is_ok()) throw CLI::ConversionError(e.key, values);
        *e.flag = *b;
      } else {
        e.option->add_result(values);
        e.option->run_callback();
      }
      source[e.key] = from;
    } catch (const CLI::Error& err) {
      problems.push_back(fmt::format("{} ({}): {}", e.key, from, err.what()));
    }
  }
  for (const auto& [key, value] : config) {
    std::string underscored = key;
    std::replace(underscored.begin(), underscored.end(), '-', '_');
    bool known = std::any_of(entries.begin(), entries.end(), [&](const Entry& e) {
      return e.key == underscored ||
             std::find(e.aliases.begin(), e.aliases.end(), key) != e.aliases.end();
    });
    if (!known)
      problems.push_back(
          fmt::format("config file {}:{}: unknown key '{}' (keys are the flag names)", config_path,
                      value.line, key));
  }
  if (!sample_input_shape.empty()) {
    auto shapes = parse_sample_inputs(sample_input_shape);
    if (shapes.is_ok()) {
      o.sample_inputs = std::move(shapes).value();
    } else {
      problems.push_back(
          fmt::format("{} ({})", shapes.status().message(), source["sample_input_shape"]));
    }
  }
  answer_hivemind_only_options(hivemind_only, problems, parsed.notices);
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
      if (e.hivemind_only) continue;
      std::string value;
      if (e.flag != nullptr) {
        value = *e.flag ? "true" : "false";
      } else if (e.is_list) {
        std::vector<std::string> items;
        // An unset list reads back as {""} from CLI11: that is no item, not an empty one.
        for (const std::string& v : e.option->as<std::vector<std::string>>())
          if (!v.empty()) items.push_back(toml_quote(v));
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
