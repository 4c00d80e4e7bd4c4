// moe_swarm_test: one binary started N times by any launcher (its own --spawn N, mpirun -np N,
// srun -n N); each copy reads its rank from the environment (read_launch_info: HIVEMIND_*, OMPI_*,
// PMIX_*, SLURM_*), so it links no MPI.
//
//   rank 0          DHT bootstrap: Dht::start, writes <rendezvous>/bootstrap.addr; at the end waits
//                   for every trainer's verdict, writes <rendezvous>/done, waits for every server
//                   to exit, and checks that every server computed forward and backward passes.
//   ranks 1..S      expert servers (server::Server, in-process) hosting expert.<r-1>.[0:K] with
//                   weights seeded by --seed, declared through a DHT node of their own that joins
//                   rank 0.
//   ranks S+1..N-1  trainers: a RemoteMixtureOfExperts (grid S x K, k_best 2) over RPC + DHT;
//                   forward and backward on a fixed-seed batch, checked against a local reference
//                   MoE made from the same seeded expert weights and the same gate; then, once
//                   every trainer is past that pass, the first trainer sends SIGTERM to the last
//                   server, every trainer waits for it to be gone and checks that the next
//                   forward/backward masks that server's experts (no hang, still matches the
//                   reference with the mask).
//
// Rendezvous is files in --rendezvous-dir (a shared filesystem under Slurm), never an MPI barrier,
// and every wait has a deadline (--timeout). On failure every rank prints one "FAILED:" line to its
// log.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <CLI/CLI.hpp>
#include <signal.h>
#include <torch/nn.h>
#include <torch/types.h>
#include <torch/utils.h>
#include <unistd.h>

#include <hivemind/client/dht_expert_directory.h>
#include <hivemind/client/remote_moe.h>
#include <hivemind/client/rpc_expert_caller.h>
#include <hivemind/common/bootstrap_file.h>
#include <hivemind/common/env.h>
#include <hivemind/common/logging.h>
#include <hivemind/common/spawn.h>
#include <hivemind/dht/dht.h>
#include <hivemind/dht/expert_registry.h>
#include <hivemind/runtime/experts.h>
#include <hivemind/server/server.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/worker.h>

namespace fs = std::filesystem;
using hivemind::Deadline;
using hivemind::Milliseconds;
using hivemind::Status;

namespace {

struct Options {
  std::string rendezvous_dir;
  std::string host =
      "127.0.0.1";  // listen host; 0.0.0.0 in the netns variant (announce a routable one)
  int servers = 0;  // 0: min(2, N - 2)
  int experts_per_server = 4;
  int64_t hidden = 64;
  int64_t batch = 16;
  int64_t k_best = 2;
  uint64_t seed = hivemind::runtime::kDefaultExpertSeed;
  double timeout_s = 60;  // every wait of every rank ends by then (a run takes ~10 s; this is for
                          // loaded CI machines)
  bool kill_server = true;
};

std::shared_ptr<spdlog::logger> mlog() {
  return hivemind::logger("multinode");
}

// A trainer's verdict file for a failure, so rank 0 reports it at once instead of at its deadline.
std::string g_failed_file;

[[noreturn]] void fail(const std::string& what) {
  mlog()->error("FAILED: {}", what);
  if (!g_failed_file.empty()) {
    std::ofstream out(g_failed_file);
    out << what << "\n";
  }
  spdlog::shutdown();
  std::fflush(stdout);
  std::_Exit(1);
}

void check(const Status& s, const std::string& what) {
  if (!s.is_ok()) fail(what + ": " + s.to_string());
}

void write_file(const fs::path& path, const std::string& text) {
  // Write then rename, so a poller never reads half a file.
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp);
    out << text;
    if (!out) fail("cannot write " + tmp.string());
  }
  fs::rename(tmp, path);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Polls a file written by another rank (a shared filesystem has no notification we could rely on).
bool wait_for_file(const fs::path& path, Deadline deadline) {
  while (!fs::exists(path)) {
    if (deadline.expired()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::string expert_uid(int server_index, int j) {
  return "expert." + std::to_string(server_index) + "." + std::to_string(j);
}

fs::path server_file(const Options& o, int rank, const char* what) {
  return fs::path(o.rendezvous_dir) / ("server-" + std::to_string(rank) + "." + what);
}

// ---------------------------------------------------------------- rank 0

int run_bootstrap(const Options& o, int world, int servers, Deadline deadline) {
  hivemind::dht::DhtOptions dopt;
  dopt.listen = "tcp://" + o.host + ":0";
  dopt.bootstrap_file = (fs::path(o.rendezvous_dir) / "bootstrap.addr").string();
  auto dht = hivemind::dht::Dht::start(dopt);
  if (!dht.is_ok()) fail("DHT bootstrap: " + dht.status().to_string());
  mlog()->info("DHT bootstrap listening at {}", (*dht)->address());

  int failures = 0;
  for (int r = servers + 1; r < world; ++r) {
    const fs::path ok = fs::path(o.rendezvous_dir) / ("rank-" + std::to_string(r) + ".ok");
    const fs::path bad = fs::path(o.rendezvous_dir) / ("rank-" + std::to_string(r) + ".failed");
    while (!fs::exists(ok) && !fs::exists(bad)) {
      if (deadline.expired())
        fail("trainer rank " + std::to_string(r) + " gave no verdict in time");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (fs::exists(bad)) {
      mlog()->error("trainer rank {} failed: {}", r, read_file(bad));
      ++failures;
    }
  }
  // End of the run: the servers drain and exit when they see this file.
  write_file(fs::path(o.rendezvous_dir) / "done", "done\n");
  for (int r = 1; r <= servers; ++r) {
    const fs::path stats = server_file(o, r, "stats");
    if (!wait_for_file(stats, deadline))
      fail("server rank " + std::to_string(r) + " did not exit in time");
    // "<forward tasks> <backward tasks>": every server (the terminated one too) saw both passes.
    std::istringstream in(read_file(stats));
    uint64_t fwd = 0, bwd = 0;
    in >> fwd >> bwd;
    mlog()->info("server rank {}: {} forward, {} backward tasks", r, fwd, bwd);
    if (fwd == 0 || bwd == 0) {
      mlog()->error("server rank {} computed no {} pass", r, fwd == 0 ? "forward" : "backward");
      ++failures;
    }
  }
  if (failures > 0) fail(std::to_string(failures) + " check(s) failed");
  mlog()->info("PASSED: {} ranks, {} servers, {} trainers", world, servers, world - servers - 1);
  return 0;
}

// ---------------------------------------------------------------- servers

std::unique_ptr<hivemind::dht::Dht> join_dht(const Options& o, bool client_mode,
                                             Deadline deadline) {
  auto peers = hivemind::wait_for_bootstrap_file(
      (fs::path(o.rendezvous_dir) / "bootstrap.addr").string(), deadline);
  if (!peers.is_ok()) fail(peers.status().to_string());
  hivemind::dht::DhtOptions dopt;
  dopt.listen = "tcp://" + o.host + ":0";
  dopt.initial_peers = *peers;
  dopt.bootstrap_timeout = std::chrono::duration_cast<Milliseconds>(deadline.remaining());
  dopt.node.client_mode = client_mode;
  auto dht = hivemind::dht::Dht::start(dopt);
  if (!dht.is_ok()) fail("joining the DHT: " + dht.status().to_string());
  return std::move(dht).value();
}

int run_server(const Options& o, int rank, Deadline deadline) {
  // SIGTERM is taken synchronously below (sigtimedwait); block it before any thread starts so that
  // every thread inherits the mask and none dies of it.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::shared_ptr<hivemind::dht::Dht> dht = join_dht(o, /*client_mode=*/false, deadline);
  hivemind::server::ServerOptions so;
  so.expert_cls = "ffn";
  so.hidden_dim = o.hidden;
  for (int j = 0; j < o.experts_per_server; ++j)
    so.expert_uids.push_back(expert_uid(rank - 1, j));
  so.seed = o.seed;
  so.optimizer = "none";    // the weights stay the seeded ones, so every pass matches the reference
  so.compression = "none";  // exact tensors on the wire: the reference check can be tight
  so.host = o.host;
  so.max_batch_size = 1024;
  so.update_period =
      10;  // declarations live 20 s: the terminated server stays listed during phase 2
  so.stats_report_interval = 0;
  so.grace_period = 5;
  so.cpu_bind = "none";  // ranks share 2 cores; let the OS place them
  so.declare = [dht](std::span<const std::string> uids, const std::string& endpoint,
                     hivemind::DhtTime expiration, Deadline d) {
    dht->add_own_endpoint(endpoint);
    return hivemind::dht::declare_experts(*dht, uids, endpoint, expiration, d);
  };
  auto server = hivemind::server::Server::create(so);
  if (!server.is_ok()) fail("server: " + server.status().to_string());
  check((*server)->start(), "server start");
  mlog()->info("serving {} experts at {}", so.expert_uids.size(), (*server)->address());
  write_file(server_file(o, rank, "pid"), std::to_string(::getpid()) + "\n");

  const fs::path done = fs::path(o.rendezvous_dir) / "done";
  bool terminated = false;
  for (;;) {
    timespec step{0, 50'000'000};
    const int sig = sigtimedwait(&signals, nullptr, &step);
    if (sig == SIGTERM || sig == SIGINT) {
      terminated = true;
      mlog()->info("got signal {}: draining and exiting", sig);
      break;
    }
    if (fs::exists(done)) break;
    if (deadline.expired()) fail("no end-of-run file and no signal before the deadline");
  }
  check((*server)->shutdown(Milliseconds(5000)), "server shutdown");
  uint64_t fwd = 0, bwd = 0;
  for (const auto& s : (*server)->stats()) {
    fwd += s.forward.tasks_completed;
    bwd += s.backward.tasks_completed;
  }
  server->reset();
  dht.reset();
  // Written last: "this server is gone" for the trainers (after SIGTERM) and for rank 0.
  write_file(server_file(o, rank, "stats"), std::to_string(fwd) + " " + std::to_string(bwd) + "\n");
  mlog()->info("exiting ({}): {} forward, {} backward tasks",
               terminated ? "terminated" : "end of run", fwd, bwd);
  return 0;
}

// ---------------------------------------------------------------- trainers

// The MoE computed locally from the routing the remote layer chose and the servers' seeded experts:
// score = sum over grid dimensions of the gate's logits, softmax over the experts that answered,
// and the weighted sum of their outputs (zero when none answered).
torch::Tensor reference_moe(
    const torch::Tensor& x, torch::nn::Linear& gate, const std::vector<int64_t>& grid,
    const hivemind::client::MoERouting& routing,
    std::map<std::string, std::shared_ptr<hivemind::runtime::ExpertModule>>& experts) {
  const torch::Tensor logits = gate->forward(x);
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < x.size(0); ++i) {
    std::vector<torch::Tensor> scores, outputs;
    const auto& chosen = routing.chosen[static_cast<size_t>(i)];
    for (size_t k = 0; k < chosen.size(); ++k) {
      if (!routing.mask[i][static_cast<int64_t>(k)].item<bool>()) continue;
      torch::Tensor score =
          logits[i][chosen[k].coords[0]] + logits[i][grid[0] + chosen[k].coords[1]];
      scores.push_back(score);
      outputs.push_back(experts.at(chosen[k].expert.uid)->forward({x.slice(0, i, i + 1)})[0][0]);
    }
    if (scores.empty()) {
      rows.push_back(torch::zeros({x.size(1)}, x.options()));
      continue;
    }
    const torch::Tensor w = torch::softmax(torch::stack(scores), 0);
    rows.push_back((w.unsqueeze(1) * torch::stack(outputs)).sum(0));
  }
  return torch::stack(rows);
}

struct PassResult {
  int64_t answered = 0, masked = 0, masked_on_killed = 0, answered_on_killed = 0;
};

// One forward + backward through the remote layer and the reference; compares outputs, the input's
// gradient and the gate's weight gradient.
PassResult checked_pass(
    const char* phase, hivemind::client::RemoteMixtureOfExperts& moe,
    std::map<std::string, std::shared_ptr<hivemind::runtime::ExpertModule>>& experts,
    const Options& o, const std::string& killed_prefix) {
  torch::Generator gen = at::detail::createCPUGenerator(o.seed + 7);
  const torch::Tensor x0 = torch::randn({o.batch, o.hidden}, gen);
  const torch::Tensor grad_out = torch::randn({o.batch, o.hidden}, gen);

  torch::Tensor x = x0.clone().requires_grad_(true);
  moe->zero_grad();
  torch::Tensor y;
  try {
    y = moe->forward(x);
    (y * grad_out).sum().backward();
  } catch (const std::exception& e) {
    fail(std::string(phase) + ": remote forward/backward threw: " + e.what());
  }
  const auto routing = moe->last_routing();
  const torch::Tensor remote_gate_grad = moe->proj->weight.grad().clone();

  // The reference uses a copy of the same gate (same weights, own gradients).
  torch::nn::Linear gate(moe->proj->options);
  {
    torch::NoGradGuard ng;
    gate->weight.copy_(moe->proj->weight);
    gate->bias.copy_(moe->proj->bias);
  }
  torch::Tensor xr = x0.clone().requires_grad_(true);
  torch::Tensor yr = reference_moe(xr, gate, moe->options().grid_size, routing, experts);
  (yr * grad_out).sum().backward();

  PassResult r;
  for (size_t i = 0; i < routing.chosen.size(); ++i) {
    for (size_t k = 0; k < routing.chosen[i].size(); ++k) {
      const bool ok = routing.mask[static_cast<int64_t>(i)][static_cast<int64_t>(k)].item<bool>();
      const bool on_killed =
          !killed_prefix.empty() && routing.chosen[i][k].expert.uid.rfind(killed_prefix, 0) == 0;
      (ok ? r.answered : r.masked) += 1;
      if (on_killed) (ok ? r.answered_on_killed : r.masked_on_killed) += 1;
    }
  }
  auto compare = [&](const torch::Tensor& a, const torch::Tensor& b, const char* what) {
    const double diff = (a - b).abs().max().item<double>();
    mlog()->info("{}: max |remote - reference| of {} = {:.3g}", phase, what, diff);
    if (!torch::allclose(a, b, /*rtol=*/1e-4, /*atol=*/1e-5))
      fail(std::string(phase) + ": " + what + " differs from the reference");
  };
  compare(y.detach(), yr.detach(), "output");
  compare(x.grad(), xr.grad(), "input gradient");
  compare(remote_gate_grad, gate->weight.grad(), "gate gradient");
  mlog()->info("{}: {} expert calls answered, {} masked", phase, r.answered, r.masked);
  return r;
}

int run_trainer(const Options& o, int rank, int world, int servers, Deadline deadline) {
  g_failed_file =
      (fs::path(o.rendezvous_dir) / ("rank-" + std::to_string(rank) + ".failed")).string();
  auto context = hivemind::transport::Context::create(
                     hivemind::transport::ContextOptions::from_env().value_or_throw())
                     .value_or_throw();
  auto worker = hivemind::transport::Worker::create(context, "trainer-io").value_or_throw();
  auto rpc = hivemind::transport::rpc::Client::create(worker);

  auto peers = hivemind::wait_for_bootstrap_file(
      (fs::path(o.rendezvous_dir) / "bootstrap.addr").string(), deadline);
  if (!peers.is_ok()) fail(peers.status().to_string());
  hivemind::dht::DhtOptions dopt;
  dopt.listen = "tcp://" + o.host + ":0";
  dopt.initial_peers = *peers;
  dopt.bootstrap_timeout = std::chrono::duration_cast<Milliseconds>(deadline.remaining());
  dopt.node.client_mode = true;
  dopt.worker = worker;
  dopt.client = rpc;
  auto started = hivemind::dht::Dht::start(dopt);
  if (!started.is_ok()) fail("joining the DHT: " + started.status().to_string());
  std::shared_ptr<hivemind::dht::Dht> dht(std::move(started).value());
  hivemind::dht::SuccessorOptions successors;
  successors.grid_size = o.experts_per_server;
  successors.negative_caching = false;
  auto directory = std::make_shared<hivemind::client::DhtExpertDirectory>(dht, successors);

  // Readiness = the DHT shows every server's experts (no barrier).
  std::vector<std::string> prefixes;
  for (int s = 0; s < servers; ++s)
    prefixes.push_back("expert." + std::to_string(s) + ".");
  for (;;) {
    auto found = directory->get_active_successors(prefixes, Deadline::after(Milliseconds(2000)));
    size_t live = 0;
    if (found.is_ok())
      for (const auto& level : *found)
        live += level.size();
    if (live == static_cast<size_t>(servers * o.experts_per_server)) break;
    if (deadline.expired()) fail("only " + std::to_string(live) + " experts appeared in the DHT");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  mlog()->info("all {} experts are in the DHT", servers * o.experts_per_server);

  std::map<std::string, std::shared_ptr<hivemind::runtime::ExpertModule>> experts;
  for (int s = 0; s < servers; ++s)
    for (int j = 0; j < o.experts_per_server; ++j) {
      auto e = hivemind::runtime::make_expert("ffn", o.hidden, expert_uid(s, j), o.seed);
      if (!e.is_ok()) fail(e.status().to_string());
      experts[expert_uid(s, j)] = *e;
    }

  torch::manual_seed(o.seed);  // the gate's initial weights: the same on every trainer
  hivemind::client::RemoteMixtureOfExpertsOptions mo;
  mo.in_features = o.hidden;
  mo.grid_size = {servers, o.experts_per_server};
  mo.uid_prefix = "expert";
  mo.k_best = o.k_best;
  mo.k_min = 1;
  mo.backward_k_min = 1;
  mo.allow_zero_outputs = true;
  // Wait for every expert: phase 1 asserts that none is masked, so no timeout may fire on a loaded
  // machine (a dead server's calls fail at once with a connection error, not by timeout).
  mo.forward_timeout = Milliseconds(30000);
  mo.backward_timeout = Milliseconds(30000);
  mo.timeout_after_k_min = Milliseconds(30000);
  hivemind::client::RemoteMixtureOfExperts moe(mo, directory,
                                               hivemind::client::RpcExpertCaller::create(rpc));

  PassResult first = checked_pass("phase 1 (all servers)", moe, experts, o, "");
  if (first.masked != 0)
    fail("phase 1: " + std::to_string(first.masked) + " expert calls failed with every server up");

  if (o.kill_server && servers >= 2) {
    const int victim = servers;  // the last server rank
    // Every trainer says when its phase 1 is over: a server killed while another trainer's phase-1
    // backward is still in flight would fail those calls, and that trainer's gradients would
    // (rightly) lack them and differ from its all-servers reference.
    auto phase1_file = [&](int trainer) {
      return fs::path(o.rendezvous_dir) / ("phase1-rank-" + std::to_string(trainer) + ".ok");
    };
    write_file(phase1_file(rank), "ok\n");
    if (rank == servers + 1) {
      for (int trainer = servers + 1; trainer < world; ++trainer) {
        if (!wait_for_file(phase1_file(trainer), deadline)) {
          fail("trainer rank " + std::to_string(trainer) + " did not finish phase 1");
        }
      }
      const fs::path pid_file = server_file(o, victim, "pid");
      if (!wait_for_file(pid_file, deadline))
        fail("no pid file of server rank " + std::to_string(victim));
      const pid_t pid = static_cast<pid_t>(std::stol(read_file(pid_file)));
      mlog()->info("terminating server rank {} (pid {}) with SIGTERM", victim, pid);
      if (::kill(pid, SIGTERM) != 0) fail("kill(" + std::to_string(pid) + ", SIGTERM) failed");
    }
    if (!wait_for_file(server_file(o, victim, "stats"), deadline))
      fail("server rank " + std::to_string(victim) + " did not exit after SIGTERM");
    // Its declarations stay live in the DHT until they expire: the layer still picks its experts
    // and must mask them.
    const auto t0 = std::chrono::steady_clock::now();
    PassResult second = checked_pass("phase 2 (one server terminated)", moe, experts, o,
                                     "expert." + std::to_string(victim - 1) + ".");
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    mlog()->info("phase 2 took {:.2f} s; {} calls to the terminated server masked", took,
                 second.masked_on_killed);
    if (second.answered_on_killed != 0) fail("phase 2: the terminated server answered");
    if (second.masked != second.masked_on_killed)
      fail("phase 2: a live server's expert was masked");
    if (second.answered == 0) fail("phase 2: nothing answered");
  }
  write_file(fs::path(o.rendezvous_dir) / ("rank-" + std::to_string(rank) + ".ok"), "ok\n");
  dht.reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "moe_swarm_test: the multi-node MoE test (start it N times with any launcher, or --spawn N)"};
  int spawn = 0;
  std::string log_dir;
  app.add_option("--spawn", spawn, "run N copies of this program (a launcher of our own)");
  app.add_option("--log-dir", log_dir, "with --spawn: one log per rank here");
  app.add_option("--rendezvous-dir", o.rendezvous_dir,
                 "shared directory for the bootstrap and verdict files")
      ->envname("HIVEMIND_RENDEZVOUS_DIR");
  app.add_option("--host", o.host,
                 "listen host (0.0.0.0: every interface, announce a routable one)")
      ->envname("HIVEMIND_HOST")
      ->capture_default_str();
  app.add_option("--servers", o.servers, "server ranks (0: min(2, N - 2))");
  app.add_option("--experts-per-server", o.experts_per_server)->capture_default_str();
  app.add_option("--hidden-dim", o.hidden)->capture_default_str();
  app.add_option("--batch-size", o.batch)->capture_default_str();
  app.add_option("--timeout", o.timeout_s, "seconds; every wait ends by then")
      ->capture_default_str();
  app.add_option("--kill-server", o.kill_server, "SIGTERM the last server halfway")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const Deadline deadline = Deadline::after(Milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
  if (spawn > 0) {
    // Rank 0 of the spawned group needs a rendezvous directory shared by all: make one now.
    bool own_dir = false;
    if (o.rendezvous_dir.empty()) {
      own_dir = true;
      char tmpl[] = "/tmp/moe_swarm_test.XXXXXX";
      if (!::mkdtemp(tmpl)) fail("mkdtemp failed");
      ::setenv("HIVEMIND_RENDEZVOUS_DIR", tmpl, 1);
    }
    auto code = hivemind::maybe_spawn_self(
        argc, argv, Deadline::after(Milliseconds(static_cast<int64_t>(o.timeout_s * 1000) + 5000)),
        log_dir);
    if (!code.is_ok()) fail(code.status().to_string());
    const int rc = code->value_or(1);
    if (own_dir && rc == 0) fs::remove_all(*hivemind::env_string("HIVEMIND_RENDEZVOUS_DIR"));
    std::printf("moe_swarm_test --spawn %d: %s (exit %d)%s%s\n", spawn,
                rc == 0 ? "passed" : "FAILED", rc, log_dir.empty() ? "" : "; logs in ",
                log_dir.c_str());
    return rc;
  }

  if (hivemind::Status logging = hivemind::configure_logging_from_env(); !logging.is_ok()) {
    std::fprintf(stderr, "moe_swarm_test: %s\n", logging.to_string().c_str());
    return 2;
  }
  torch::set_num_threads(1);
  auto launch = hivemind::read_launch_info();
  if (!launch.is_ok()) fail(launch.status().to_string());
  const int rank = launch->rank, world = launch->world_size;
  if (world < 3)
    fail("needs at least 3 ranks (a DHT bootstrap, a server, a trainer); got " +
         std::to_string(world));
  const int servers = o.servers > 0 ? o.servers : std::min(2, world - 2);
  if (servers > world - 2) fail("--servers leaves no trainer");
  if (o.rendezvous_dir.empty()) {
    // Under Slurm every node sees the submit directory.
    auto submit = hivemind::env_string("SLURM_SUBMIT_DIR");
    auto job = hivemind::env_string("SLURM_JOB_ID");
    if (!submit || !job)
      fail("give --rendezvous-dir (or HIVEMIND_RENDEZVOUS_DIR): a directory every rank sees");
    o.rendezvous_dir =
        *submit + "/.hivemind/" + *job + "." + hivemind::env_string("SLURM_STEP_ID").value_or("0");
  }
  std::error_code ec;
  fs::create_directories(o.rendezvous_dir, ec);
  mlog()->info("rank {}/{} ({}) on {}, rendezvous {}", rank, world, launch->source,
               hivemind::short_hostname(), o.rendezvous_dir);

  if (rank == 0) return run_bootstrap(o, world, servers, deadline);
  if (rank <= servers) return run_server(o, rank, deadline);
  return run_trainer(o, rank, world, servers, deadline);
}
