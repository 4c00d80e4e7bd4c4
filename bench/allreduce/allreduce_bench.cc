// hivemind-bench allreduce [--json] [--bytes N] [--processes P] [--warmup W] [--iterations I]
//
// The averaging module's rounds against OpenMPI's MPI_Allreduce, both run here in the same run
// over the same number of processes on this host (issue 17's targets):
//  - mpi/tcp: hivemind-bench-mpi-allreduce under `mpirun --mca pml ob1 --mca btl tcp,self` with
//    every socket on loopback (as scripts/test-multinode.sh), and mpi/default: OpenMPI's own
//    choice of the on-host path (Debian 12's OpenMPI 4.1: pml ob1, btl vader, shared memory);
//    each as OpenMPI comes and with glibc keeping freed memory (_kept_memory: OpenMPI maps a
//    fresh temporary buffer per large call, see mpi_allreduce.cc), the faster being the baseline;
//  - transport/tcp and transport/ucx: P members of this program (re-executed with --member-rank)
//    forming a launcher group through a bootstrap file and averaging a float32 tensor of --bytes
//    with Averager::step(), the transport backend over tcp:// and ucx:// (shared memory) listen
//    addresses; each compared by bus bandwidth, 2(P-1)/P * bytes / time, with the MPI run of the
//    same kind of link (target: >= 0.8x);
//  - transport/tcp+u8: the same rounds with uint8 wire compression (kBlockAbsmaxU8), by wall time
//    against the uncompressed tcp rounds (target: <= 0.5x);
//  - nccl/one-member: where a GPU and NCCL exist, one-member rounds of the NCCL backend on GPU 0
//    against a device-to-device copy of the same bytes (one GPU gives a group of one only).
//
// Timing: MPI's iteration is its slowest rank's MPI_Allreduce after an MPI_Barrier, so every rank
// starts together. The members have no barrier: the round's group forms when the last of them
// calls step(), and a member that finished the previous round early waits in step() for the late
// ones. So a round's time here runs from the last member's call to step() to the last member's
// return (steady_clock is the host's CLOCK_MONOTONIC, one clock for every process), the same span
// MPI's barrier measures; each member's own slowest step() (the wait for late members included) is
// printed beside it. The figure is the median over --iterations after --warmup rounds. It includes
// forming the round's group (one leader exchange), as a trainer sees it; MPI_Allreduce has its
// group fixed at MPI_Init. Each member checks after its first round that its tensor holds the
// exact mean (compressed: within the codec's bound) before any figure is reported.
#include "allreduce_bench.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <unistd.h>

#include <hivemind/averaging/averager.h>
#include <hivemind/harness/child_process.h>
#include <hivemind/transport/swarm_key.h>

#include "support/report.h"

namespace hivemind::bench {
namespace {

struct AllreduceOptions {
  size_t bytes = 64u << 20;
  int processes = 4;
  int warmup = 2;
  int iterations = 5;
  std::string links = "tcp,ucx";  // which transport cases run
  bool skip_mpi = false;
  std::string mpirun;  // default: the mpiexec CMake found
  int round_timeout_ms = 120000;
  // A member process: this program re-executed by the parent.
  int member_rank = -1;
  std::string bootstrap_file;
  std::string member_link;
  bool member_compress = false;

  void declare(CLI::App& app) {
    app.add_option("--bytes", bytes, "float32 bytes each member averages")
        ->check(CLI::Range(size_t{4}, size_t{1} << 34))
        ->capture_default_str();
    app.add_option("--processes", processes, "members (and MPI ranks)")
        ->check(CLI::Range(2, 64))
        ->capture_default_str();
    app.add_option("--warmup", warmup, "rounds before the timed ones")
        ->check(CLI::Range(0, 1000))
        ->capture_default_str();
    app.add_option("--iterations", iterations, "timed rounds (the median is reported)")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    app.add_option("--links", links, "transport cases: tcp, ucx or both (tcp,ucx)")
        ->capture_default_str();
    app.add_flag("--skip-mpi", skip_mpi, "no MPI_Allreduce baseline (ratios are not reported)");
    app.add_option("--mpirun", mpirun, "the mpirun to start the MPI baseline with");
    app.add_option("--round-timeout-ms", round_timeout_ms, "each round's deadline")
        ->check(CLI::Range(1000, 3600000))
        ->capture_default_str();
    app.add_option("--member-rank", member_rank)->group("");
    app.add_option("--bootstrap-file", bootstrap_file)->group("");
    app.add_option("--member-link", member_link)->group("");
    app.add_flag("--member-compress", member_compress)->group("");
  }
};

constexpr char kKey[] = "bench.allreduce";

double bus_bandwidth_MBps(size_t bytes, int processes, double seconds) {
  double factor = 2.0 * (processes - 1) / processes;
  return factor * static_cast<double>(bytes) / seconds / 1e6;
}

std::string self_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

// " NAME=0.1,0.2,..." out of a line (NAME: seconds, starts or ends); the values in order.
Result<std::vector<double>> parse_seconds(const std::string& line,
                                          const std::string& name = "seconds") {
  const std::string field = " " + name + "=";
  auto at = line.find(field);
  if (at == std::string::npos)
    return protocol_error(fmt::format("no {}= in the line '{}'", name, line));
  std::vector<double> values;
  std::stringstream list(
      line.substr(at + field.size(), line.find(' ', at + 1) - at - field.size()));
  std::string item;
  while (std::getline(list, item, ',')) {
    char* end = nullptr;
    double v = std::strtod(item.c_str(), &end);
    if (end == item.c_str() || *end != '\0' || !(v > 0))
      return protocol_error(fmt::format("'{}' in the line '{}' is not a time", item, line));
    values.push_back(v);
  }
  return values;
}

// Per iteration, the largest of the members' values.
std::vector<double> largest_per_iteration(const std::vector<std::vector<double>>& per_member) {
  std::vector<double> largest(per_member.front().size(), 0);
  for (const auto& member : per_member)
    for (size_t i = 0; i < largest.size() && i < member.size(); ++i)
      largest[i] = std::max(largest[i], member[i]);
  return largest;
}

// One transport case's rounds, per iteration.
struct MemberRounds {
  std::vector<double> seconds;       // last member's step() call to the last return
  std::vector<double> slowest_step;  // the longest step() of any member
};

// ---------------- a member (a child process) ----------------

int run_member(const AllreduceOptions& o) {
  const size_t count = o.bytes / sizeof(float);
  // Member r holds r + 1 everywhere (and a ramp, so parts differ): the mean is known exactly.
  std::vector<float> data(count);
  for (size_t i = 0; i < count; ++i)
    data[i] = static_cast<float>(o.member_rank + 1) + static_cast<float>(i % 1024) / 1024.0f;

  averaging::AveragerOptions options;
  options.key = kKey;
  options.launcher = averaging::LauncherGroupOptions{};
  options.launcher->rank = o.member_rank;
  options.launcher->size = o.processes;
  options.launcher->bootstrap_file = o.bootstrap_file;
  options.listen = o.member_link + "://127.0.0.1:0";
  options.round_timeout = Milliseconds(o.round_timeout_ms);
  if (o.member_compress) options.compression = quant::Scheme::kBlockAbsmaxU8;
  averaging::TensorRef ref;
  ref.data = data.data();
  ref.elements = count;
  auto averager = averaging::Averager::create({ref}, std::move(options));
  if (!averager.is_ok()) {
    std::printf("member failed: %s\n", averager.status().to_string().c_str());
    return 1;
  }
  // Times of the host's monotonic clock, so the parent can line the members' rounds up.
  auto clock_seconds = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
  };
  std::vector<double> seconds, starts, ends;
  for (int i = 0; i < o.warmup + o.iterations; ++i) {
    auto start = std::chrono::steady_clock::now();
    averaging::RoundReport report = averager.value()->step();
    auto end = std::chrono::steady_clock::now();
    double took = std::chrono::duration<double>(end - start).count();
    if (!report.ok || report.members.size() != static_cast<size_t>(o.processes)) {
      std::printf("member failed: round %d: %s (%zu members, backend '%s')\n", i,
                  report.failure.c_str(), report.members.size(), report.backend.c_str());
      return 1;
    }
    if (i == 0) {
      // Exact mean: (P + 1) / 2 plus the ramp, exact in float32. Compressed: the transport
      // backend's documented bound (docs/architecture.md), |error| <= A / 126 with A the largest
      // |value| in the block, here < P + 1.
      double offset = (o.processes + 1) / 2.0, worst = 0;
      double bound = o.member_compress ? (o.processes + 1.0) / 126.0 : 1e-6 * (offset + 1);
      for (size_t k = 0; k < count; ++k) {
        double expected = offset + static_cast<double>(k % 1024) / 1024.0;
        worst = std::max(worst, std::abs(data[k] - expected));
      }
      if (worst > bound) {
        std::printf("member failed: the first round's result is off the mean by %g (bound %g)\n",
                    worst, bound);
        return 1;
      }
    }
    if (i >= o.warmup) {
      seconds.push_back(took);
      starts.push_back(clock_seconds(start));
      ends.push_back(clock_seconds(end));
    }
  }
  std::string line = fmt::format("member rank={} backend=transport", o.member_rank);
  for (const auto& [name, values] :
       {std::pair{"seconds", &seconds}, std::pair{"starts", &starts}, std::pair{"ends", &ends}}) {
    line += fmt::format(" {}=", name);
    for (size_t i = 0; i < values->size(); ++i)
      line += fmt::format("{}{:.9f}", i ? "," : "", (*values)[i]);
  }
  std::printf("%s\n", line.c_str());
  averager.value()->close();
  return 0;
}

// ---------------- the parent ----------------

// Runs --processes members over `link`; each iteration's round time and slowest step().
Result<MemberRounds> run_members(const AllreduceOptions& o, const std::string& link, bool compress,
                                 Reporter& reporter) {
  std::string bootstrap = fmt::format("/tmp/hivemind-bench-allreduce-{}-{}-{}", ::getpid(), link,
                                      compress ? "u8" : "raw");
  std::filesystem::remove(bootstrap);
  // The members share a swarm key, as a deployment's trainers would: their connections are
  // authenticated, which also lets same-host UCX peers read large parts straight from each other's
  // memory (transport/same_host_copy.h). A user's own HIVEMIND_SWARM_KEY_FILE wins.
  const std::string key_file = bootstrap + ".key";
  std::filesystem::remove(key_file);
  if (std::getenv("HIVEMIND_SWARM_KEY_FILE") == nullptr) {
    HIVEMIND_ASSIGN_OR_RETURN(transport::SwarmKey key, transport::SwarmKey::generate());
    HIVEMIND_RETURN_IF_ERROR(key.write_new(key_file));
  }
  struct RemoveKey {
    std::string path;
    ~RemoveKey() {
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
  } remove_key{key_file};
  std::vector<ChildProcess> members;
  for (int r = 0; r < o.processes; ++r) {
    std::vector<std::string> argv = {self_dir() + "/hivemind-bench",
                                     "allreduce",
                                     "--member-rank",
                                     std::to_string(r),
                                     "--processes",
                                     std::to_string(o.processes),
                                     "--bootstrap-file",
                                     bootstrap,
                                     "--member-link",
                                     link,
                                     "--bytes",
                                     std::to_string(o.bytes),
                                     "--warmup",
                                     std::to_string(o.warmup),
                                     "--iterations",
                                     std::to_string(o.iterations),
                                     "--round-timeout-ms",
                                     std::to_string(o.round_timeout_ms)};
    if (compress) argv.push_back("--member-compress");
    ChildOptions child;
    child.argv = std::move(argv);
    // Each member logs every round at info and warns that loopback runs without a swarm key; the
    // parent's summary is what a reader wants, and a member that fails says why on its stdout
    // line, so members log errors only unless the caller asked for a level.
    if (std::getenv("HIVEMIND_LOG_LEVEL") == nullptr) child.env = {{"HIVEMIND_LOG_LEVEL", "error"}};
    if (std::getenv("HIVEMIND_SWARM_KEY_FILE") == nullptr)
      child.env.emplace_back("HIVEMIND_SWARM_KEY_FILE", key_file);
    HIVEMIND_ASSIGN_OR_RETURN(ChildProcess member, ChildProcess::spawn(std::move(child)));
    members.push_back(std::move(member));
  }
  // Every round has its deadline, so the whole run has one too.
  auto budget = Milliseconds(o.round_timeout_ms) * (o.warmup + o.iterations + 1);
  Deadline deadline = Deadline::after(budget);
  std::vector<std::vector<double>> per_member, starts, ends;
  Status failed = Status::ok();
  for (int r = 0; r < o.processes; ++r) {
    auto line = members[r].read_line_containing("member ", deadline);
    if (!line.is_ok()) {
      failed = line.status().with_context(fmt::format("member {}", r));
      break;
    }
    if (line->rfind("member failed", 0) == 0) {
      failed = internal_error(fmt::format("member {}: {}", r, *line));
      break;
    }
    auto seconds = parse_seconds(*line);
    auto started = parse_seconds(*line, "starts");
    auto ended = parse_seconds(*line, "ends");
    for (const auto* parsed : {&seconds, &started, &ended}) {
      if (!parsed->is_ok()) failed = parsed->status();
    }
    if (!failed.is_ok()) break;
    per_member.push_back(std::move(seconds).value());
    starts.push_back(std::move(started).value());
    ends.push_back(std::move(ended).value());
  }
  std::filesystem::remove(bootstrap);
  if (!failed.is_ok()) return failed;  // the members still running are killed with `members`
  for (auto& member : members) {
    auto code = member.wait(deadline);
    if (!code.is_ok() || *code != 0)
      reporter.note("  a member exited with {}",
                    code.is_ok() ? std::to_string(*code) : code.status().to_string());
  }
  MemberRounds rounds;
  rounds.slowest_step = largest_per_iteration(per_member);
  const std::vector<double> last_start = largest_per_iteration(starts);
  const std::vector<double> last_end = largest_per_iteration(ends);
  for (size_t i = 0; i < last_start.size() && i < last_end.size(); ++i)
    rounds.seconds.push_back(last_end[i] - last_start[i]);
  return rounds;
}

// hivemind-bench-mpi-allreduce under mpirun with `mca` settings; the per-iteration times.
Result<std::vector<double>> run_mpi(const AllreduceOptions& o, const std::string& mpirun,
                                    const std::vector<std::string>& mca, bool keep_freed_memory) {
  std::vector<std::string> argv = {mpirun, "--allow-run-as-root", "--oversubscribe", "-np",
                                   std::to_string(o.processes)};
  argv.insert(argv.end(), mca.begin(), mca.end());
  for (const std::string& a :
       {self_dir() + "/hivemind-bench-mpi-allreduce", std::string("--bytes"),
        std::to_string(o.bytes), std::string("--warmup"), std::to_string(o.warmup),
        std::string("--iterations"), std::to_string(o.iterations),
        std::string("--keep-freed-memory"), std::string(keep_freed_memory ? "1" : "0")})
    argv.push_back(a);
  HIVEMIND_ASSIGN_OR_RETURN(ChildProcess mpi, ChildProcess::spawn(argv));
  Deadline deadline = Deadline::after(std::chrono::minutes(10));
  HIVEMIND_ASSIGN_OR_RETURN(std::string line, mpi.read_line_containing("mpi_allreduce", deadline));
  HIVEMIND_ASSIGN_OR_RETURN(int code, mpi.wait(deadline));
  if (code != 0) return internal_error(fmt::format("mpirun exited with {}", code));
  return parse_seconds(line);
}

std::vector<std::string> split_links(const std::string& links) {
  std::vector<std::string> out;
  std::stringstream list(links);
  std::string item;
  while (std::getline(list, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

struct MpiBaseline {
  std::string name;  // "mpi_tcp", "mpi_default_kept_memory", ...
  double bus_MBps = 0;
};

int run_parent(const AllreduceOptions& o, Reporter& reporter) {
  const std::vector<std::string> links = split_links(o.links);
  for (const std::string& link : links) {
    if (link != "tcp" && link != "ucx") {
      std::fprintf(stderr, "hivemind-bench allreduce: --links takes tcp and ucx, not '%s'\n",
                   link.c_str());
      return 2;
    }
  }
  reporter.note("allreduce: {} processes, {} float32 per member, median of {} rounds after {}",
                o.processes, size_label(o.bytes), o.iterations, o.warmup);

  // ---- the baselines: OpenMPI over loopback TCP and over its default on-host path ----
  std::string mpirun = o.mpirun;
#ifdef HIVEMIND_BENCH_MPIEXEC
  if (mpirun.empty()) mpirun = HIVEMIND_BENCH_MPIEXEC;
#endif
  // "tcp" -> the faster mpi_tcp run, "ucx" -> the faster mpi_default run
  std::map<std::string, MpiBaseline> baseline_of_link;
  if (o.skip_mpi || mpirun.empty()) {
    reporter.note("MPI baseline skipped: {}", o.skip_mpi ? "--skip-mpi" : "built without MPI");
  } else {
    const std::vector<std::string> loopback = {"--mca", "oob_tcp_if_include", "lo"};
    std::vector<std::string> tcp = {
        "--mca", "pml", "ob1", "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo"};
    tcp.insert(tcp.end(), loopback.begin(), loopback.end());
    struct Run {
      std::string link, name;
      std::vector<std::string> mca;
    };
    // Each link twice: as OpenMPI comes, and with freed memory kept (mpi_allreduce.cc says why);
    // the faster one is the baseline.
    for (const Run& run : {Run{"tcp", "mpi_tcp", tcp}, Run{"ucx", "mpi_default", loopback}}) {
      for (bool keep : {false, true}) {
        std::string name = keep ? run.name + "_kept_memory" : run.name;
        auto seconds = run_mpi(o, mpirun, run.mca, keep);
        if (!seconds.is_ok()) {
          reporter.note("MPI baseline {} failed: {}", name, seconds.status().to_string());
          continue;
        }
        double t = median(*seconds);
        MpiBaseline b{name, bus_bandwidth_MBps(o.bytes, o.processes, t)};
        reporter.note("  {}: {:.1f} ms per MPI_Allreduce, bus bandwidth {:.0f} MB/s", name, t * 1e3,
                      b.bus_MBps);
        reporter.report({fmt::format("{}/{}", name, size_label(o.bytes)), "bus_bandwidth_MBps",
                         b.bus_MBps, "MB/s", "", 0});
        auto best = baseline_of_link.find(run.link);
        if (best == baseline_of_link.end() || b.bus_MBps > best->second.bus_MBps)
          baseline_of_link[run.link] = b;
      }
    }
  }

  // ---- ours: the transport backend over each link, then compressed over tcp ----
  int failures = 0;
  double tcp_round_seconds = 0;
  for (const std::string& link : links) {
#ifndef HIVEMIND_TRANSPORT_HAVE_UCX
    if (link == "ucx") {
      reporter.note("transport/ucx skipped: built without UCX");
      continue;
    }
#endif
    auto rounds = run_members(o, link, false, reporter);
    if (!rounds.is_ok()) {
      reporter.note("transport/{} failed: {}", link, rounds.status().to_string());
      ++failures;
      continue;
    }
    double t = median(rounds->seconds);
    if (link == "tcp") tcp_round_seconds = t;
    double bus = bus_bandwidth_MBps(o.bytes, o.processes, t);
    Measurement m{fmt::format("transport/{}/{}", link, size_label(o.bytes)),
                  "bus_bandwidth_MBps",
                  bus,
                  "MB/s",
                  "",
                  0};
    auto baseline = baseline_of_link.find(link);
    if (baseline != baseline_of_link.end()) {
      m.baseline = baseline->second.name;
      m.baseline_value = baseline->second.bus_MBps;
    }
    reporter.note(
        "  transport/{}: {:.1f} ms per round (slowest member's step() {:.1f} ms), bus bandwidth "
        "{:.0f} MB/s{}",
        link, t * 1e3, median(rounds->slowest_step) * 1e3, bus,
        baseline == baseline_of_link.end()
            ? std::string()
            : fmt::format(" = {:.2f}x {} (target >= 0.8x)", bus / baseline->second.bus_MBps,
                          baseline->second.name));
    reporter.report(m);
  }
  if (tcp_round_seconds > 0) {
    auto rounds = run_members(o, "tcp", true, reporter);
    if (!rounds.is_ok()) {
      reporter.note("transport/tcp+u8 failed: {}", rounds.status().to_string());
      ++failures;
    } else {
      double t = median(rounds->seconds);
      reporter.note(
          "  transport/tcp+u8: {:.1f} ms per round (slowest member's step() {:.1f} ms) = {:.2f}x "
          "the uncompressed round (target <= 0.5x)",
          t * 1e3, median(rounds->slowest_step) * 1e3, t / tcp_round_seconds);
      reporter.report({fmt::format("transport/tcp+u8/{}", size_label(o.bytes)), "round_ms", t * 1e3,
                       "ms", "transport_tcp_uncompressed", tcp_round_seconds * 1e3});
    }
  }

  // ---- NCCL: a one-member round where a GPU exists ----
  auto nccl = measure_nccl_one_member(o.bytes, o.warmup, o.iterations);
  if (!nccl.is_ok()) {
    reporter.note("nccl/one-member skipped: {}", nccl.status().message());
  } else {
    double round = median(nccl->round_seconds), copy = median(nccl->copy_seconds);
    reporter.note(
        "  nccl/one-member on {}: {:.3f} ms per round ({:.2f}x a device copy of the same "
        "bytes; one GPU gives a group of one only)",
        nccl->device, round * 1e3, round / copy);
    reporter.report({fmt::format("nccl/one-member/{}", size_label(o.bytes)), "round_ms",
                     round * 1e3, "ms", "cuda_d2d_copy", copy * 1e3});
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace

HIVEMIND_BENCH(allreduce,
               "averaging rounds (transport over tcp/ucx, uint8, nccl) vs OpenMPI MPI_Allreduce",
               AllreduceOptions) {
  if (options.member_rank >= 0) return run_member(options);
  return run_parent(options, reporter);
}

}  // namespace hivemind::bench
