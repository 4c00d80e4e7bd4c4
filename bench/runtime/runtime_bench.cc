// hivemind-bench runtime [--json] [--expert ffn] [--hidden 1024] [--tasks 48] [--max-task 128]
//                        [--max-batch 512] [--reps 3] [--threads 1] [--mode forward|backward|both]
//                        [--retain-memory 1|0]
//
// Tasks of mixed sizes (fixed seed) are submitted at once to an in-process Runtime, which batches
// them (never above --max-batch). The batches it formed are then replayed directly on an identical
// backend, already concatenated (outside the timing), on a thread with the same LibTorch thread
// settings. The two alternate --reps times and the medians are reported; the ratio runtime/direct
// is the runtime's efficiency (1.0 = no overhead). Backward includes the optimizer step (Adam) on
// both sides. What the runtime legitimately does on top is inside its timing: concatenating the
// tasks' inputs (and, backward, their output gradients), slicing the outputs, completions.
//
// Both sides run in one process under the allocator policy the Runtime sets at start
// (host_memory.h); --retain-memory 0 leaves glibc's default, under which each batch faults fresh
// pages in and both sides vary with the allocator's state. Besides wall time, each side's process
// CPU time and minor page faults are reported: on a shared machine they show what the runtime adds
// when the wall-time ratio is scheduling noise.
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <hivemind/common/blas_check.h>
#include <hivemind/runtime/expert_backend.h>
#include <hivemind/runtime/host_memory.h>
#include <hivemind/runtime/runtime.h>

#include "support/process_cost.h"
#include "support/report.h"

namespace hivemind::bench {
namespace {

using runtime::ExpertBackend;

struct RuntimeBenchOptions {
  std::string expert = "ffn";
  int64_t hidden = 1024;
  int tasks = 48;
  int64_t max_task = 128;
  int64_t max_batch = 512;
  int threads = 1;
  bool retain_memory = true;
  int reps = 3;
  std::string mode = "both";

  void declare(CLI::App& cli) {
    cli.add_option("--expert", expert, "expert class")->capture_default_str();
    cli.add_option("--hidden", hidden, "hidden size")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option("--tasks", tasks, "tasks submitted at once")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option("--max-task", max_task, "samples of the largest task (1..N, fixed seed)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option("--max-batch", max_batch, "largest batch the runtime may form")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option("--threads", threads, "LibTorch intra-op threads")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option(
           "--retain-memory", retain_memory,
           "keep freed host memory mapped, as the Runtime does (0: the C library's default)")
        ->capture_default_str();
    cli.add_option("--reps", reps, "repetitions (medians are reported)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option("--mode", mode, "which passes to measure")
        ->check(CLI::IsMember({"forward", "backward", "both"}))
        ->capture_default_str();
  }
};

std::shared_ptr<ExpertBackend> backend_for(const RuntimeBenchOptions& s) {
  runtime::ExpertBackendOptions options;
  options.optimizer.name = "adam";
  return ExpertBackend::create(
             "bench.0", runtime::make_expert(s.expert, s.hidden, "bench.0", 1).value(), options)
      .value();
}

struct RuntimeRun {
  Cost cost;
  std::vector<int64_t> batch_sizes;  // in execution order
};

RuntimeRun run_runtime(const RuntimeBenchOptions& s, bool backward,
                       const std::vector<std::vector<torch::Tensor>>& tasks) {
  runtime::RuntimeOptions ro;
  ro.intra_op_threads = s.threads;
  ro.retain_freed_host_memory = s.retain_memory;
  runtime::Runtime rt(ro);
  auto backend = backend_for(s);
  RuntimeRun run;
  std::mutex mutex;
  std::condition_variable cv;
  size_t done = 0;
  runtime::TaskPoolOptions po;
  po.name = backward ? "bench/backward" : "bench/forward";
  po.max_batch_size = s.max_batch;
  auto pool = rt.add_pool(po, [&, backward](std::vector<torch::Tensor> batch) {
                  run.batch_sizes.push_back(batch[0].size(0));  // only the compute thread writes
                  return backward ? backend->backward(std::move(batch))
                                  : backend->forward(std::move(batch));
                }).value();
  if (!rt.start().is_ok()) std::abort();
  const CostMeter meter;
  for (const auto& task : tasks) {
    Status st = pool->submit(task, [&](runtime::TaskResult r) {
      if (!r.is_ok()) {
        std::fprintf(stderr, "runtime bench: task failed: %s\n", r.status().to_string().c_str());
        std::abort();
      }
      std::lock_guard lock(mutex);
      if (++done == tasks.size()) cv.notify_all();
    });
    if (!st.is_ok()) std::abort();
  }
  {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return done == tasks.size(); });
  }
  run.cost = meter.stop();
  rt.stop();
  return run;
}

// The same batches, concatenated beforehand, straight into the backend on a fresh thread.
Cost run_direct(const RuntimeBenchOptions& s, bool backward,
                const std::vector<std::vector<torch::Tensor>>& tasks,
                const std::vector<int64_t>& batch_sizes) {
  std::vector<std::vector<torch::Tensor>> batches;
  size_t next = 0;
  for (int64_t size : batch_sizes) {
    std::vector<std::vector<torch::Tensor>> parts;
    int64_t got = 0;
    while (got < size) {
      got += tasks[next][0].size(0);
      parts.push_back(tasks[next++]);
    }
    std::vector<torch::Tensor> batch;
    for (size_t t = 0; t < parts[0].size(); ++t) {
      std::vector<torch::Tensor> column;
      for (auto& p : parts)
        column.push_back(p[t]);
      batch.push_back(column.size() == 1 ? column[0] : torch::cat(column));
    }
    batches.push_back(std::move(batch));
  }
  auto backend = backend_for(s);
  Cost cost;
  std::thread worker([&] {
    runtime::set_compute_threads(s.threads);
    const CostMeter meter;
    for (auto& batch : batches) {
      auto out = backward ? backend->backward(batch) : backend->forward(batch);
      if (!out.is_ok()) std::abort();
    }
    cost = meter.stop();
  });
  worker.join();
  return cost;
}

}  // namespace

HIVEMIND_BENCH(
    runtime,
    "in-process Runtime (batching, scheduling, callbacks) vs the same batches on the module",
    RuntimeBenchOptions) {
  const RuntimeBenchOptions& s = options;
  const int reps = s.reps;
  const std::string& mode = s.mode;
  warn_if_slow_blas();
  // The Runtime sets this process-wide policy when it starts; set before either side runs so the
  // direct side, in the same process, runs under it from its first repetition too.
  if (s.retain_memory && !runtime::retain_freed_host_memory()) {
    reporter.note("runtime bench: the C library does not keep freed memory; expect page faults");
  }
  torch::manual_seed(0);
  std::mt19937 rng(7);
  std::vector<std::vector<torch::Tensor>> fwd_tasks, bwd_tasks;
  int64_t samples = 0;
  for (int i = 0; i < s.tasks; ++i) {
    const int64_t n = std::uniform_int_distribution<int64_t>(1, s.max_task)(rng);
    samples += n;
    torch::Tensor x = torch::randn({n, s.hidden});
    fwd_tasks.push_back({x});
    bwd_tasks.push_back({x, torch::randn({n, s.hidden})});
  }
  reporter.note(
      "runtime bench: expert={} hidden={} tasks={} (1..{} samples, {} in all) max_batch={} "
      "intra-op threads={} reps={}",
      s.expert, s.hidden, s.tasks, s.max_task, samples, s.max_batch, s.threads, reps);
  for (bool backward : {false, true}) {
    if ((backward && mode == "forward") || (!backward && mode == "backward")) continue;
    auto& tasks = backward ? bwd_tasks : fwd_tasks;
    std::vector<double> rt_rates, direct_rates;
    std::vector<int64_t> last_batches;
    RuntimeRun probe =
        run_runtime(s, backward, tasks);  // warm-up, and the batches the direct side replays
    std::vector<double> wall_ratios, cpu_ratios, rt_faults, direct_faults;
    for (int r = 0; r < reps; ++r) {
      // Alternate which side goes first so drifting machine load does not favour one of them.
      Cost direct;
      if (r % 2 == 1) direct = run_direct(s, backward, tasks, probe.batch_sizes);
      RuntimeRun run = run_runtime(s, backward, tasks);
      if (r % 2 == 0) direct = run_direct(s, backward, tasks, run.batch_sizes);
      rt_rates.push_back(static_cast<double>(samples) / run.cost.wall_s);
      direct_rates.push_back(static_cast<double>(samples) / direct.wall_s);
      wall_ratios.push_back(direct.wall_s / run.cost.wall_s);
      cpu_ratios.push_back(direct.cpu_s / run.cost.cpu_s);
      rt_faults.push_back(static_cast<double>(run.cost.minor_faults));
      direct_faults.push_back(static_cast<double>(direct.minor_faults));
      last_batches = run.batch_sizes;
      probe = run;
    }
    reporter.note("  per-repetition ratios: {:.3f}", fmt::join(wall_ratios, " "));
    reporter.note("  per-repetition CPU-time ratios: {:.3f} (median {:.3f})",
                  fmt::join(cpu_ratios, " "), median(cpu_ratios));
    reporter.note("  minor page faults per repetition: runtime {:.0f}, direct {:.0f} (medians)",
                  median(rt_faults), median(direct_faults));
    int64_t largest = 0;
    for (int64_t b : last_batches)
      largest = std::max(largest, b);
    reporter.note("  {}: {} batches, mean {:.1f} samples, largest {} (limit {})",
                  backward ? "backward" : "forward", last_batches.size(),
                  static_cast<double>(samples) / static_cast<double>(last_batches.size()), largest,
                  s.max_batch);
    reporter.report(
        {fmt::format("{}_h{}/{}", s.expert, s.hidden, backward ? "backward" : "forward"),
         "samples_per_s", median(rt_rates), "samples/s", "direct_module", median(direct_rates)});
  }
  return 0;
}

}  // namespace hivemind::bench
