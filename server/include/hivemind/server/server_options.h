// The expert server's options: hivemind-compatible names (hivemind-server / run_server.py), each
// also a command-line flag (--name or --dashed-name), an environment variable HIVEMIND_<NAME> and a
// config-file key. parse_command_line() (command_line.h) fills this struct; an embedding program
// may fill it directly.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>
#include <hivemind/runtime/experts.h>

namespace hivemind::server {

// Announces experts (uids at endpoint until the DHT time `expiration`). The server uses its DHT
// node when this is empty; tests and embedders may supply their own.
using DeclareFn =
    std::function<Status(std::span<const std::string> uids, const std::string& endpoint,
                         DhtTime expiration, Deadline deadline)>;

struct ServerOptions {
  // ---- experts ----
  std::string expert_cls = "ffn";  // ffn | ffn_v08 | transformer | nop | torchscript | registered
  int64_t hidden_dim = 1024;
  int64_t seq_len = 128;                 // transformer only
  std::vector<std::string> expert_uids;  // explicit uids, e.g. {"expert.0.0", "expert.0.1"}
  std::string expert_pattern;            // or a grid, e.g. "expert.[0:4].[0:4]"
  int num_experts = 0;  // with a pattern: how many uids to pick (0: every uid of the grid)
  uint64_t seed =
      runtime::kDefaultExpertSeed;  // initial weights: make_expert(cls, hidden_dim, uid, seed)
  // torchscript only (runtime/torchscript_expert.h):
  std::string module_path;  // the TorchScript file every expert is loaded from
  bool reinit = false;      // initial weights from `seed` instead of the file's
  // Each input's dtype and per-sample shape (--sample_input_shape "int64:128;512"); empty: the
  // file's.
  std::vector<runtime::TensorSchema> sample_inputs;

  // ---- batching ----
  int64_t max_batch_size = 16384;  // samples per batch (and per request)
  int64_t min_batch_size = 1;
  int64_t batch_timeout_ms = 0;  // how long a batch waits for min_batch_size

  // ---- compute ----
  // auto (cuda when LibTorch sees a CUDA device, else cpu: choose_device) | cpu | cuda | cuda:N |
  // a comma list (experts round-robin). hivemind-server's --device defaults to auto; this struct
  // to cpu, so that a program embedding the server never lands on a GPU it did not ask for.
  std::string device = "cpu";
  std::string optimizer = "adam";  // sgd | adam | adamw | none
  double lr = 1e-3;
  double momentum = 0.0;                          // sgd
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam, adamw (torch.optim's betas and eps)
  double weight_decay = 0.0;
  double clip_grad_norm = 0.0;  // 0: off
  // linear: warm up over warmup_steps, then decay linearly to 0 at total_steps (both 0: constant
  // lr); none: constant lr whatever the steps say (hivemind's --scheduler none)
  std::string scheduler = "linear";
  int64_t warmup_steps = 0;                     // hivemind's --num_warmup_steps
  int64_t total_steps = 0;                      // hivemind's --num_training_steps
  int intra_op_threads = 1;                     // LibTorch threads per compute thread
  bool detect_anomalies = false;                // refuse NaN/Inf inputs and outputs
  std::string compression = "block_absmax_u8";  // wire compression of activations and gradients

  // ---- network ----
  std::string host =
      "0.0.0.0";  // listen host ("0.0.0.0": every interface, announce a routable one)
  int port = 0;   // 0: any free port
  std::string transport = "auto";  // auto | tcp | ucx
  // DHT peers to join (parse_peer_address forms, or "auto": the head node of the Slurm
  // allocation); with neither these nor bootstrap_file: start a new swarm
  std::vector<std::string> initial_peers;
  std::string bootstrap_file;        // also join the peers this file lists, once it exists
  double bootstrap_timeout = 120.0;  // seconds to wait for bootstrap_file
  double update_period = 30.0;       // seconds between declarations to the DHT
  double expiration = 0.0;           // seconds a declaration lives; 0: max(2 * update_period, 3)
  // The swarm key file (docs/security.md); empty: HIVEMIND_SWARM_KEY_FILE or none, and then the
  // server is open to anyone who can reach its port.
  std::string swarm_key_file;

  // ---- persistence and operations ----
  std::string checkpoint_dir;           // per-expert checkpoints; empty: none
  double checkpoint_interval = 300.0;   // seconds between periodic checkpoints
  double stats_report_interval = 60.0;  // seconds between stats lines; 0: off
  double grace_period = 30.0;           // SIGTERM: seconds to drain, checkpoint and exit
  std::string cpu_bind = "auto";        // auto | none
  std::string cpu_cores;                // restrict placement to these PUs ("0-15")
  int metrics_port =
      -1;  // Prometheus text at http://metrics_host:port/metrics; 0: any port; -1: off
  std::string metrics_host = "127.0.0.1";  // loopback unless asked ("0.0.0.0": every interface)

  // ---- embedding hooks (not flags) ----
  DeclareFn declare;
};

// Every problem at once, one per line, each naming the option and what to do ("--max_batch_size
// (64) must be >= --min_batch_size (128)").
Status validate(const ServerOptions& options);

// The uids a server hosts: expert_uids, or the grid of expert_pattern (all of it when num_experts
// is 0, otherwise num_experts distinct uids drawn with `seed`, in grid order). Pattern grammar:
// dot-separated parts, each a name or "[a:b]" (coordinates a..b-1), e.g. "ffn.[0:4].[0:8]".
Result<std::vector<std::string>> expand_expert_pattern(std::string_view pattern, int num_experts,
                                                       uint64_t seed);
Result<std::vector<std::string>> server_expert_uids(const ServerOptions& options);

// --sample_input_shape's value: per input, an optional dtype and ':' (float32 when absent), then
// its dimensions joined by ','; inputs joined by ';' ("512", "128,512", "int64:16;512",
// "bfloat16:512"; "bool:" with no dimension is one value per sample). InvalidArgument naming the
// malformed part; every dimension must be a positive integer and every dtype one the wire carries.
Result<std::vector<runtime::TensorSchema>> parse_sample_inputs(std::string_view text);
// The inverse, for --print_config (float32 inputs are written without their dtype).
std::string format_sample_inputs(const std::vector<runtime::TensorSchema>& inputs);

// The expert configuration make_expert gets for these options (the trainer-side rebuild passes the
// same to make_expert).
runtime::ExpertConfig expert_config(const ServerOptions& options);

// Effective declaration lifetime in seconds.
double effective_expiration(const ServerOptions& options);

// The devices a server computes on, and why: `device` itself, except "auto", which becomes "cuda"
// when `cuda_visible` (LibTorch was built with CUDA and sees a device) and "cpu" otherwise.
struct DeviceChoice {
  std::string device;
  std::string reason;  // "auto: no CUDA device visible (or LibTorch built without CUDA)", ...
};
DeviceChoice choose_device(const std::string& device, bool cuda_visible);
// Whether this process sees a CUDA device through LibTorch.
bool cuda_device_visible();

}  // namespace hivemind::server
