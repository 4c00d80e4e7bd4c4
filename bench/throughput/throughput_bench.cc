// hivemind-bench throughput [--json] [--preset P] [hivemind's parameters as --flags]
//
// hivemind's benchmark_throughput (H7.1 in docs/hivemind-reference.md): one expert server process
// (build/bin/ hivemind-server) hosting num_experts experts "expert.0".."expert.N-1" on 127.0.0.1,
// and num_clients client processes (this program re-executed with --client-rank R), each looping
// num_batches_per_client times: pick a random expert, forward a randn(batch_size, hid_dim) batch
// through RemoteExpert and, with backprop, out.sum().backward() (a backward RPC, one optimizer step
// on the server). Metric: samples / s = batch_size * num_clients * num_batches_per_client / time,
// every sample counted once for fwd+bwd.
//
// Timing: clients connect and fetch every expert's info first, then wait at a barrier (a byte on
// their stdin); the clock runs from the release until the last client is done, and a client that is
// done waits for a second byte before it shuts down, so no client's exit runs inside the window.
// hivemind's clock started at "server ready" and so also counted the clients' process start-up.
//
// Baseline, in the same run after the server is gone: the same experts rebuilt with the zoo from
// the same seed (bit-identical weights), wrapped in ExpertBackend (module + the same optimizer, no
// task pool, no runtime, no network), running the same number of batches of the same size on one
// thread with the server's LibTorch thread setting: forward and, with backprop, backward (which
// re-runs the forward, backpropagates ones = d out.sum() and takes one Adam step) -- the
// computation the server does per request. ratio = remote / in_process (1.0 = no network + runtime
// overhead).
//
// --expert_cls torchscript [--module_path F]: the server hosts the TorchScript file F (default: the
// zoo's ffn of width hid_dim scripted into a temporary directory by runtime::save_scripted_ffn),
// and the baseline is the native `ffn` expert of the same hid_dim served the same way in the same
// run, right after: ratio = torchscript / native ffn, the cost of TorchScript's interpreter.
// F must take one [batch, hid_dim] float32 input.
//
// Presets are hivemind's, scaled down so each runs in seconds on 2 CPU cores (hivemind's own values
// are printed next to them); every parameter flag overrides the preset.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <signal.h>
#include <torch/cuda.h>
#include <torch/types.h>
#include <torch/utils.h>
#include <unistd.h>

#include <hivemind/client/remote_expert.h>
#include <hivemind/client/rpc_expert_caller.h>
#include <hivemind/common/blas_check.h>
#include <hivemind/harness/child_process.h>
#include <hivemind/runtime/expert_backend.h>
#include <hivemind/runtime/experts.h>
#include <hivemind/runtime/runtime.h>
#include <hivemind/runtime/torchscript_expert.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/swarm_key.h>
#include <hivemind/transport/worker.h>

#include "support/process_cost.h"
#include "support/report.h"

namespace hivemind::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  std::string preset = "ffn_forward_backward";
  int num_experts = 0;
  int num_handlers = 0;
  int num_clients = 0;
  int num_batches_per_client = 0;
  std::string expert_cls = "ffn";
  std::string module_path;  // torchscript experts only
  int64_t hid_dim = 0;
  int64_t batch_size = 0;
  int64_t max_batch_size = 0;
  bool backprop = true;
  std::string device = "cpu";
  // Not hivemind parameters: what the C++ server adds.
  int64_t seq_len = 16;              // transformer experts only
  std::string compression = "none";  // wire compression (hivemind v0.8 sent float32)
  // tcp: same-host UCX 1.13 runs over its own tcp transport, and through it nop reached half of
  // what the plain TCP backend does (52-67k vs 126-166k samples/s, docs/benchmarks.md). --transport
  // ucx|auto.
  std::string transport = "tcp";
  std::string cpu_bind = "none";  // the clients share the 2 cores with the server
  int threads = 1;  // LibTorch intra-op threads of the server's compute thread and the baseline
  uint64_t seed = runtime::kDefaultExpertSeed;
};

struct Preset {
  const char* name;
  Config config;
  const char* original;  // hivemind's values, for the record
};

Config make(int experts, int handlers, int clients, int batches, const char* cls, int64_t hid,
            int64_t batch, int64_t max_batch, bool backprop) {
  Config c;
  c.num_experts = experts;
  c.num_handlers = handlers;
  c.num_clients = clients;
  c.num_batches_per_client = batches;
  c.expert_cls = cls;
  c.hid_dim = hid;
  c.batch_size = batch;
  c.max_batch_size = max_batch;
  c.backprop = backprop;
  return c;
}

const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = {
      {"ffn_forward_backward", make(4, 2, 4, 8, "ffn", 512, 256, 1024, true),
       "16 experts, 64 handlers, 128 clients x 16 batches, ffn hid 1024, batch 2048, max 8192, "
       "fwd+bwd"},
      {"ffn_forward", make(4, 2, 4, 8, "ffn", 512, 256, 1024, false),
       "as ffn_forward_backward, forward only"},
      {"ffn_small_batch", make(4, 4, 8, 16, "ffn", 1024, 32, 8192, false),
       "4 experts, 64 handlers, 128 clients x 64 batches, ffn hid 1024, batch 32, max 8192, fwd"},
      {"nop", make(4, 4, 8, 256, "nop", 1024, 32, 128, false),
       "nop expert, other parameters as the default (here: the issue's nop target configuration)"},
      {"minimalistic", make(1, 1, 1, 16, "ffn", 256, 256, 1024, true),
       "1 expert, 1 handler, 1 client, other parameters as the default"},
  };
  return all;
}

struct ThroughputBenchOptions {
  std::string preset = "ffn_forward_backward";
  Config flags;  // the parameter flags' values; only the flags given override the preset
  int client_rank = 0;
  std::string server;      // a client's server address
  std::string server_bin;  // default: hivemind-server next to this program
  bool compare_swarm_key = false;
  const CLI::App* cli = nullptr;

  bool given(const char* flag) const { return cli->count(flag) > 0; }

  void declare(CLI::App& app) {
    cli = &app;
    std::vector<std::string> names;
    for (const Preset& p : presets())
      names.push_back(p.name);
    app.add_option("--preset", preset, "hivemind's preset the parameter flags start from")
        ->check(CLI::IsMember(names))
        ->capture_default_str();
    app.add_option("--num_experts", flags.num_experts)->check(CLI::PositiveNumber);
    app.add_option("--num_handlers", flags.num_handlers,
                   "recorded only (default with --num_clients: half of them)")
        ->check(CLI::PositiveNumber);
    app.add_option("--num_clients", flags.num_clients)->check(CLI::PositiveNumber);
    app.add_option("--num_batches_per_client", flags.num_batches_per_client)
        ->check(CLI::PositiveNumber);
    app.add_option("--expert_cls", flags.expert_cls,
                   "ffn, ffn_v08, transformer, nop or torchscript (compared with ffn)");
    app.add_option("--module_path", flags.module_path,
                   "--expert_cls torchscript: the file (default: the zoo's ffn, scripted)");
    app.add_option("--hid_dim", flags.hid_dim)->check(CLI::PositiveNumber);
    app.add_option("--batch_size", flags.batch_size)->check(CLI::PositiveNumber);
    app.add_option("--max_batch_size", flags.max_batch_size, "default with --batch_size: 4 batches")
        ->check(CLI::PositiveNumber);
    app.add_option("--backprop", flags.backprop, "0 or 1");
    app.add_option("--device", flags.device, "cpu or cuda[:N]");
    app.add_option("--seq_len", flags.seq_len, "transformer experts only")
        ->check(CLI::PositiveNumber);
    app.add_option("--compression", flags.compression, "none, float16, block_absmax_u8, ...");
    app.add_option("--transport", flags.transport, "auto, tcp or ucx")
        ->check(CLI::IsMember({"auto", "tcp", "ucx"}));
    app.add_option("--cpu_bind", flags.cpu_bind, "none or auto");
    app.add_option("--threads", flags.threads,
                   "LibTorch intra-op threads of the server's compute thread and the baseline")
        ->check(CLI::PositiveNumber);
    app.add_option("--seed", flags.seed, "expert weights' seed");
    app.add_option("--server-bin", server_bin, "the hivemind-server to start");
    app.add_flag("--compare-swarm-key", compare_swarm_key,
                 "run again with a swarm key (server and clients) and report keyed vs open");
    // A client process: this program re-executed by the parent.
    app.add_option("--client-rank", client_rank)->group("");
    app.add_option("--server", server)->group("");
    std::string footer =
        "presets (scaled down from hivemind's to run in seconds on 2 CPU cores):\n";
    for (const Preset& p : presets()) {
      const Config& c = p.config;
      footer += fmt::format(
          "  {:<21} {} experts, {} handlers, {} clients x {} batches, {} hid {}, batch {}, max {}, "
          "{}\n  {:<21}   hivemind: {}\n",
          p.name, c.num_experts, c.num_handlers, c.num_clients, c.num_batches_per_client,
          c.expert_cls, c.hid_dim, c.batch_size, c.max_batch_size, c.backprop ? "fwd+bwd" : "fwd",
          "", p.original);
    }
    app.footer(footer);
  }
};

Result<Config> parse_config(const ThroughputBenchOptions& options) {
  auto it = std::find_if(presets().begin(), presets().end(),
                         [&](const Preset& p) { return options.preset == p.name; });
  if (it == presets().end())
    return invalid_argument_error(fmt::format("unknown --preset '{}'", options.preset));
  Config c = it->config;
  const Config& flags = options.flags;
  c.preset = options.preset;
  if (options.given("--num_experts")) c.num_experts = flags.num_experts;
  if (options.given("--num_clients")) {
    c.num_clients = flags.num_clients;
    c.num_handlers = std::max(1, c.num_clients / 2);
  }
  if (options.given("--num_handlers")) c.num_handlers = flags.num_handlers;
  if (options.given("--num_batches_per_client"))
    c.num_batches_per_client = flags.num_batches_per_client;
  if (options.given("--expert_cls")) c.expert_cls = flags.expert_cls;
  if (options.given("--module_path")) c.module_path = flags.module_path;
  if (!c.module_path.empty() && c.expert_cls != runtime::kTorchScriptExpertClass)
    return invalid_argument_error("--module_path only applies with --expert_cls torchscript");
  if (options.given("--hid_dim")) c.hid_dim = flags.hid_dim;
  if (options.given("--batch_size")) {
    c.batch_size = flags.batch_size;
    c.max_batch_size = 4 * c.batch_size;
  }
  if (options.given("--max_batch_size")) c.max_batch_size = flags.max_batch_size;
  if (options.given("--backprop")) c.backprop = flags.backprop;
  if (options.given("--device")) c.device = flags.device;
  if (options.given("--seq_len")) c.seq_len = flags.seq_len;
  if (options.given("--compression")) c.compression = flags.compression;
  if (options.given("--transport")) c.transport = flags.transport;
  if (options.given("--cpu_bind")) c.cpu_bind = flags.cpu_bind;
  if (options.given("--threads")) c.threads = flags.threads;
  if (options.given("--seed")) c.seed = flags.seed;
  if (c.max_batch_size < c.batch_size)
    return invalid_argument_error("need max_batch_size >= batch_size");
  if (c.device != "cpu" && !torch::cuda::is_available()) {
    return invalid_argument_error(
        fmt::format("--device {}: no CUDA device in this process", c.device));
  }
  return c;
}

std::string uid_of(int i) {
  return fmt::format("expert.{}", i);
}

std::vector<int64_t> batch_shape(const Config& c) {
  if (c.expert_cls == "transformer") return {c.batch_size, c.seq_len, c.hid_dim};
  return {c.batch_size, c.hid_dim};
}

// The arguments every client gets besides its rank and the server address.
std::vector<std::string> client_args(const Config& c) {
  return {"--num_experts",
          std::to_string(c.num_experts),
          "--num_batches_per_client",
          std::to_string(c.num_batches_per_client),
          "--expert_cls",
          c.expert_cls,
          "--hid_dim",
          std::to_string(c.hid_dim),
          "--batch_size",
          std::to_string(c.batch_size),
          "--max_batch_size",
          std::to_string(c.max_batch_size),
          "--backprop",
          c.backprop ? "1" : "0",
          "--device",
          c.device,
          "--seq_len",
          std::to_string(c.seq_len)};
}

// ---------------- client process ----------------

int run_client(const ThroughputBenchOptions& options) {
  auto parsed = parse_config(options);
  if (!parsed.is_ok()) {
    std::fprintf(stderr, "throughput client: %s\n", parsed.status().to_string().c_str());
    return 2;
  }
  const Config c = *parsed;
  const int rank = options.client_rank;
  const std::string& server = options.server;
  torch::set_num_threads(1);  // as hivemind's clients
  try {
    auto context =
        transport::Context::create(transport::ContextOptions::from_env().value_or_throw())
            .value_or_throw();
    auto worker =
        transport::Worker::create(context, fmt::format("bench-client-{}", rank)).value_or_throw();
    auto caller = client::RpcExpertCaller::create(transport::rpc::Client::create(worker));
    std::vector<client::RemoteExpert> experts;
    for (int i = 0; i < c.num_experts; ++i) {
      client::ExpertAddress ref{uid_of(i), server};
      caller->info(ref, Deadline::after(Milliseconds(30'000)))
          .value_or_throw();  // connect + cache info
      experts.emplace_back(ref, caller);
    }
    std::mt19937 rng(static_cast<uint32_t>(c.seed) + static_cast<uint32_t>(rank));
    torch::manual_seed(static_cast<uint64_t>(rank));
    torch::Device device(c.device);
    torch::Tensor batch = torch::randn(batch_shape(c), torch::TensorOptions().device(device));
    if (c.backprop) batch.requires_grad_(true);

    std::printf("ready\n");
    std::fflush(stdout);
    char go = 0;
    if (::read(0, &go, 1) != 1) return 1;  // the parent went away
    const CostMeter meter;
    for (int b = 0; b < c.num_batches_per_client; ++b) {
      client::RemoteExpert& expert = experts[rng() % experts.size()];
      torch::Tensor out = expert->forward(batch);
      if (c.backprop) {
        out.sum().backward();
        batch.mutable_grad() = torch::Tensor();  // hivemind's dummy batch never reads its gradient
      }
    }
    if (device.is_cuda()) torch::cuda::synchronize();
    const Cost cost = meter.stop();
    std::printf("done %.6f %.6f %lld\n", cost.wall_s, cost.cpu_s,
                static_cast<long long>(cost.minor_faults));
    std::fflush(stdout);
    // Stay (idle) until every client is done: a client that finished early would otherwise tear
    // down its worker and LibTorch's statics on the cores the others still measure on.
    char leave = 0;
    (void)::read(0, &leave, 1);  // the parent's word, or its end
    worker.reset();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "throughput client %d: %s\n", rank, e.what());
    return 1;
  }
}

// ---------------- in-process baseline ----------------

runtime::ExpertConfig expert_config(const Config& c) {
  runtime::ExpertConfig config;
  config.cls = c.expert_cls;
  config.hidden_dim = c.hid_dim;
  config.seq_len = c.seq_len;
  config.module_path = c.module_path;
  return config;
}

double run_baseline(const Config& c) {
  std::vector<std::shared_ptr<runtime::ExpertBackend>> backends;
  for (int i = 0; i < c.num_experts; ++i) {
    runtime::ExpertBackendOptions options;
    options.device = torch::Device(c.device);
    options.optimizer.name = "adam";  // hivemind-server's default, as the server here runs
    backends.push_back(
        runtime::ExpertBackend::create(
            uid_of(i), runtime::make_expert(expert_config(c), uid_of(i), c.seed).value_or_throw(),
            options)
            .value_or_throw());
  }
  double seconds = 0;
  std::string error;
  std::thread worker([&] {  // a fresh thread, like the server's compute thread
    try {
      runtime::set_compute_threads(c.threads);
      torch::manual_seed(0);
      torch::Device device(c.device);
      torch::Tensor batch = torch::randn(batch_shape(c), torch::TensorOptions().device(device));
      std::mt19937 rng(static_cast<uint32_t>(c.seed));
      const int total = c.num_clients * c.num_batches_per_client;
      const auto start = Clock::now();
      for (int b = 0; b < total; ++b) {
        auto& backend = backends[rng() % backends.size()];
        auto out = backend->forward({batch}).value_or_throw();
        if (c.backprop) backend->backward({batch, torch::ones_like(out[0])}).value_or_throw();
      }
      if (device.is_cuda()) torch::cuda::synchronize();
      seconds = seconds_since(start);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  worker.join();
  if (!error.empty()) throw std::runtime_error(error);
  return seconds;
}

// ---------------- the parent ----------------

std::string self_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

Result<std::string> parse_ready_address(const std::string& line) {
  // "hivemind-server ready: N expert(s) at tcp://127.0.0.1:PORT[, DHT node ...]"
  auto at = line.find(" at ");
  if (line.rfind("hivemind-server ready:", 0) != 0 || at == std::string::npos) {
    return protocol_error(fmt::format("unexpected server line '{}'", line));
  }
  std::string address = line.substr(at + 4);
  if (auto comma = address.find(','); comma != std::string::npos) address.resize(comma);
  return address;
}

struct RemoteRun {
  double seconds = 0;
  std::string address;
  // What the timed window cost: the server (from /proc; unset if it could not be read) and the
  // clients together (each measured itself over its own loop).
  std::optional<Cost> server;
  Cost clients;
};

// A client's last line, "done <wall s> <cpu s> <minor faults>": its loop's own cost.
Result<Cost> parse_done_line(const std::string& line) {
  Cost cost;
  long long faults = 0;
  char rest = 0;
  if (std::sscanf(line.c_str(), "done %lf %lf %lld%c", &cost.wall_s, &cost.cpu_s, &faults, &rest) !=
          3 ||
      faults < 0)
    return protocol_error(
        fmt::format("a client's last line is not 'done <wall> <cpu> <faults>': '{}'", line));
  cost.minor_faults = faults;
  return cost;
}

// CPU and minor page faults of the timed window, server and clients apart: where a transport's
// start-up costs show (a shared-memory transport faults in every peer's segments as it first
// writes them; on a virtual machine each such fault costs microseconds).
void note_window_cost(const RemoteRun& run, Reporter& reporter) {
  const std::string server = run.server ? fmt::format("server {:.2f} s CPU, {} minor page faults",
                                                      run.server->cpu_s, run.server->minor_faults)
                                        : std::string("server not measured (/proc unreadable)");
  reporter.note("  (timed window: {}; clients {:.2f} s CPU, {} minor page faults)", server,
                run.clients.cpu_s, run.clients.minor_faults);
}

// `swarm_key_file` non-empty: the server gets --swarm_key_file and the clients
// HIVEMIND_SWARM_KEY_FILE, so every connection runs the swarm handshake.
Result<RemoteRun> run_remote(const Config& c, const std::string& server_bin, Reporter& reporter,
                             const std::string& swarm_key_file = "") {
  std::vector<std::string> uids;
  for (int i = 0; i < c.num_experts; ++i)
    uids.push_back(uid_of(i));
  std::vector<std::string> server_argv = {server_bin,
                                          "--expert_cls",
                                          c.expert_cls,
                                          "--hidden_dim",
                                          std::to_string(c.hid_dim),
                                          "--seq_len",
                                          std::to_string(c.seq_len),
                                          "--expert_uids",
                                          fmt::format("{}", fmt::join(uids, ",")),
                                          "--seed",
                                          std::to_string(c.seed),
                                          "--max_batch_size",
                                          std::to_string(c.max_batch_size),
                                          "--device",
                                          c.device,
                                          "--optimizer",
                                          "adam",
                                          "--intra_op_threads",
                                          std::to_string(c.threads),
                                          "--compression",
                                          c.compression,
                                          "--host",
                                          "127.0.0.1",
                                          "--port",
                                          "0",
                                          "--transport",
                                          c.transport,
                                          "--cpu_bind",
                                          c.cpu_bind,
                                          "--stats_report_interval",
                                          "0",
                                          "--update_period",
                                          "600",
                                          "--grace_period",
                                          "10"};
  if (!c.module_path.empty()) {
    server_argv.push_back("--module_path");
    server_argv.push_back(c.module_path);
  }
  if (!swarm_key_file.empty()) {
    server_argv.push_back("--swarm_key_file");
    server_argv.push_back(swarm_key_file);
  }
  HIVEMIND_ASSIGN_OR_RETURN(ChildProcess server, ChildProcess::spawn(server_argv));
  auto server_ready_at = Clock::now();
  HIVEMIND_ASSIGN_OR_RETURN(std::string ready,
                            server.read_line(Deadline::after(std::chrono::seconds(120))));
  HIVEMIND_ASSIGN_OR_RETURN(std::string address, parse_ready_address(ready));
  reporter.note("server ready at {} in {:.2f} s (pid {})", address, seconds_since(server_ready_at),
                server.pid());

  std::vector<ChildProcess> clients;
  const std::string self = self_dir() + "/hivemind-bench";
  for (int r = 0; r < c.num_clients; ++r) {
    std::vector<std::string> argv = {self,       "throughput", "--client-rank", std::to_string(r),
                                     "--server", address};
    for (const std::string& a : client_args(c))
      argv.push_back(a);
    // The clients inherit this process's environment.
    if (!swarm_key_file.empty()) ::setenv("HIVEMIND_SWARM_KEY_FILE", swarm_key_file.c_str(), 1);
    auto child = ChildProcess::spawn(argv);
    if (!swarm_key_file.empty()) ::unsetenv("HIVEMIND_SWARM_KEY_FILE");
    if (!child.is_ok()) return child.status();
    clients.push_back(std::move(child).value());
  }
  for (auto& client : clients) {
    HIVEMIND_ASSIGN_OR_RETURN(std::string line,
                              client.read_line(Deadline::after(std::chrono::seconds(120))));
    if (line != "ready")
      return protocol_error(fmt::format("client {}: unexpected line '{}'", client.pid(), line));
  }
  RemoteRun run;
  const auto server_before = counters_of(server.pid());
  const auto start = Clock::now();
  for (auto& client : clients)
    HIVEMIND_RETURN_IF_ERROR(client.write("g"));
  for (auto& client : clients) {
    auto line = client.read_line(Deadline::after(std::chrono::seconds(600)));
    if (!line.is_ok() || line->rfind("done ", 0) != 0) {
      return internal_error(fmt::format("a client failed (pid {}): {}", client.pid(),
                                        line.is_ok() ? *line : line.status().to_string()));
    }
    HIVEMIND_ASSIGN_OR_RETURN(Cost cost, parse_done_line(*line));
    run.clients.cpu_s += cost.cpu_s;
    run.clients.minor_faults += cost.minor_faults;
  }
  run.seconds = seconds_since(start);
  run.clients.wall_s = run.seconds;
  const auto server_after = counters_of(server.pid());
  if (server_before.is_ok() && server_after.is_ok())
    run.server = cost_between(*server_before, *server_after, run.seconds);
  run.address = address;
  for (auto& client : clients)
    HIVEMIND_RETURN_IF_ERROR(client.write("x"));  // the window is over: the clients may leave
  for (auto& client : clients) {
    const pid_t pid = client.pid();
    HIVEMIND_ASSIGN_OR_RETURN(int code, client.wait(Deadline::after(std::chrono::seconds(30))));
    if (code != 0) return internal_error(fmt::format("client {} exited with {}", pid, code));
  }
  server.signal(SIGTERM);
  // The measurement is complete: a server that does not drain cleanly is reported, not fatal.
  auto code = server.wait(Deadline::after(std::chrono::seconds(30)));
  if (!code.is_ok() || *code != 0) {
    std::fprintf(
        stderr,
        "hivemind-bench throughput: warning: hivemind-server did not exit cleanly after SIGTERM "
        "(%s)\n",
        code.is_ok() ? fmt::format("status {}", *code).c_str() : code.status().to_string().c_str());
  }
  return run;
}

// A directory of its own under the system's temporary one, removed with this object.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "hivemind-bench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("cannot create a temporary directory for the scripted ffn");
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The TorchScript expert served, then the native ffn of the same width served the same way.
int run_torchscript_against_ffn(Config c, const std::string& server_bin, int64_t samples,
                                Reporter& reporter) {
  std::optional<ScratchDir> scratch;
  if (c.module_path.empty()) {
    try {
      scratch.emplace();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hivemind-bench throughput: %s\n", e.what());
      return 1;
    }
    c.module_path = (scratch->path() / fmt::format("ffn_{}.pt", c.hid_dim)).string();
    Status saved = runtime::save_scripted_ffn(c.module_path, c.hid_dim, c.seed);
    if (!saved.is_ok()) {
      std::fprintf(stderr, "hivemind-bench throughput: %s\n", saved.to_string().c_str());
      return 1;
    }
    reporter.note("the zoo's ffn (hid {}) scripted with torch::jit into {}", c.hid_dim,
                  c.module_path);
  }
  auto scripted = run_remote(c, server_bin, reporter);
  if (!scripted.is_ok()) {
    std::fprintf(stderr, "hivemind-bench throughput: torchscript: %s\n",
                 scripted.status().to_string().c_str());
    return 1;
  }
  Config native = c;
  native.expert_cls = "ffn";
  native.module_path.clear();
  auto ffn = run_remote(native, server_bin, reporter);
  if (!ffn.is_ok()) {
    std::fprintf(stderr, "hivemind-bench throughput: ffn: %s\n", ffn.status().to_string().c_str());
    return 1;
  }
  const double scripted_rate = static_cast<double>(samples) / scripted->seconds;
  const double ffn_rate = static_cast<double>(samples) / ffn->seconds;
  reporter.note(
      "torchscript ({}): {:.3f} samples / s; native ffn: {:.3f} samples / s; ratio {:.3f}",
      c.module_path, scripted_rate, ffn_rate, scripted_rate / ffn_rate);
  reporter.report({c.preset + "/torchscript", "samples_per_s", scripted_rate, "samples/s",
                   "native_ffn", ffn_rate});
  return 0;
}

}  // namespace

HIVEMIND_BENCH(throughput,
               "hivemind's benchmark_throughput: server + client processes vs in-process experts",
               ThroughputBenchOptions) {
  if (options.given("--client-rank")) return run_client(options);
  auto parsed = parse_config(options);
  if (!parsed.is_ok()) {
    std::fprintf(stderr, "hivemind-bench throughput: %s\n", parsed.status().to_string().c_str());
    return 2;
  }
  const Config c = *parsed;
  const std::string server_bin =
      options.server_bin.empty() ? self_dir() + "/hivemind-server" : options.server_bin;
  warn_if_slow_blas();
  const int64_t samples = c.batch_size * c.num_clients * c.num_batches_per_client;
  reporter.note(
      "throughput preset {}: {} {} expert(s) hid {}, {} client process(es) x {} batch(es) of {}, "
      "max_batch_size {}, {}, device {}, compression {}, {} LibTorch thread(s) per compute thread",
      c.preset, c.num_experts, c.expert_cls, c.hid_dim, c.num_clients, c.num_batches_per_client,
      c.batch_size, c.max_batch_size, c.backprop ? "forward + backward" : "forward only", c.device,
      c.compression, c.threads);
  reporter.note(
      "(presets are hivemind's scaled down to run in seconds on 2 CPU cores; --help lists "
      "hivemind's "
      "values. num_handlers={} is recorded only: hivemind-server serves every connection from one "
      "I/O thread)",
      c.num_handlers);

  if (c.expert_cls == runtime::kTorchScriptExpertClass) {
    return run_torchscript_against_ffn(c, server_bin, samples, reporter);
  }
  auto remote = run_remote(c, server_bin, reporter);
  if (!remote.is_ok()) {
    std::fprintf(stderr, "hivemind-bench throughput: %s\n", remote.status().to_string().c_str());
    return 1;
  }
  const double remote_rate = static_cast<double>(samples) / remote->seconds;
  reporter.note("Throughput for {} passes: {:.3f} samples / s.",
                c.backprop ? "forward + backward" : "forward", remote_rate);
  reporter.note("  ({} samples in {:.3f} s through {})", samples, remote->seconds, remote->address);
  note_window_cost(*remote, reporter);

  if (options.compare_swarm_key) {
    // Same run again, every connection keyed: what the swarm handshake costs a member.
    char dir_template[] = "/tmp/hivemind-bench-key-XXXXXX";
    const char* dir = ::mkdtemp(dir_template);
    const std::string key_file = dir ? std::string(dir) + "/swarm.key" : "";
    auto key = transport::SwarmKey::generate();
    Status written = !dir          ? errno_error("mkdtemp", errno)
                     : key.is_ok() ? key->write_new(key_file)
                                   : key.status();
    auto keyed = written.is_ok() ? run_remote(c, server_bin, reporter, key_file)
                                 : Result<RemoteRun>(written);
    if (dir) std::filesystem::remove_all(dir);
    if (!keyed.is_ok()) {
      std::fprintf(stderr, "hivemind-bench throughput: keyed run: %s\n",
                   keyed.status().to_string().c_str());
      return 1;
    }
    // The open run again after the keyed one: whichever of two runs goes second runs on warmer
    // caches and page tables (measured: the keyed run, always second, came out 1.06-1.24x), so the
    // keyed run is compared with the mean of an open run before and one after it.
    auto open_again = run_remote(c, server_bin, reporter);
    if (!open_again.is_ok()) {
      std::fprintf(stderr, "hivemind-bench throughput: second open run: %s\n",
                   open_again.status().to_string().c_str());
      return 1;
    }
    const double keyed_rate = static_cast<double>(samples) / keyed->seconds;
    const double open_rate =
        (remote_rate + static_cast<double>(samples) / open_again->seconds) / 2.0;
    reporter.note(
        "With a swarm key: {:.3f} samples / s ({:.3f}x the mean of the open runs before "
        "and after it)",
        keyed_rate, keyed_rate / open_rate);
    reporter.report({c.preset + "_swarm_key", "samples_per_s", keyed_rate, "samples/s",
                     "no_swarm_key", open_rate});
  }

  double baseline_seconds = 0;
  try {
    baseline_seconds = run_baseline(c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hivemind-bench throughput: baseline failed: %s\n", e.what());
    return 1;
  }
  const double baseline_rate = static_cast<double>(samples) / baseline_seconds;
  reporter.note(
      "In-process baseline (same experts and batches, no network, no runtime): {:.3f} samples / s "
      "({:.3f} s)",
      baseline_rate, baseline_seconds);
  reporter.report(
      {c.preset, "samples_per_s", remote_rate, "samples/s", "in_process", baseline_rate});
  return 0;
}

}  // namespace hivemind::bench
