// Reporting and registration for hivemind-bench.
//
// Every benchmark measures its baseline in the same run and reports each measurement with it, so
// the ratio printed is between numbers taken on the same machine under the same load. With --json
// each measurement is one line of JSON (written by nlohmann-json, so any string is escaped):
//   {"bench":"transport","case":"tcp/4MiB","metric":"bandwidth_MBps","value":N,"unit":"MB/s",
//    "baseline":"raw_tcp","baseline_value":N,"ratio":N}
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

namespace hivemind::bench {

struct Measurement {
  std::string case_name;  // e.g. "tcp/4MiB"
  std::string metric;     // e.g. "bandwidth_MBps", "half_rtt_us", "samples_per_s"
  double value = 0;
  std::string unit;      // e.g. "MB/s"
  std::string baseline;  // e.g. "raw_tcp", "memcpy", "in_process"; empty when none applies
  double baseline_value = 0;
};

// The --json line of one measurement of benchmark `bench`: an object with the fields above, the
// baseline fields only when `m` names a baseline; a number that is not finite is null.
std::string json_line(const std::string& bench, const Measurement& m);

class Reporter {
 public:
  Reporter(std::string bench, bool json) : bench_(std::move(bench)), json_(json) {}

  bool json() const { return json_; }
  void report(const Measurement& m);

  // Progress and context for people: stdout normally, stderr under --json so stdout stays
  // parseable.
  template <typename... Args>
  void note(fmt::format_string<Args...> format, Args&&... args) {
    std::string line = fmt::format(format, std::forward<Args>(args)...);
    std::fprintf(json_ ? stderr : stdout, "%s\n", line.c_str());
    std::fflush(json_ ? stderr : stdout);
  }

  const std::vector<Measurement>& measurements() const { return measurements_; }

 private:
  std::string bench_;
  bool json_;
  std::vector<Measurement> measurements_;
};

// A benchmark's options are a struct whose members hold the defaults and whose
//   void declare(CLI::App& cli);
// binds each member to its --flag on the benchmark's subcommand, so that a flag the benchmark does
// not declare, or a value that does not parse, is an error before anything runs.
//
// BenchSetup declares the options of one benchmark on `cli` and returns the function that runs it
// with the values parsed into them.
using BenchRun = std::function<int(Reporter&)>;
using BenchSetup = std::function<BenchRun(CLI::App& cli)>;

struct BenchEntry {
  std::string description;
  BenchSetup setup;
};

// Every benchmark linked into this program, by name.
const std::map<std::string, BenchEntry>& benches();
void register_bench(const char* name, const char* description, BenchSetup setup);

template <typename Options>
struct Registration {
  Registration(const char* name, const char* description, int (*run)(const Options&, Reporter&)) {
    register_bench(name, description, [run](CLI::App& cli) -> BenchRun {
      auto options = std::make_shared<Options>();
      options->declare(cli);
      return [run, options](Reporter& reporter) { return run(*options, reporter); };
    });
  }
};

// HIVEMIND_BENCH(transport, "RPC latency and bandwidth per backend vs ...", TransportOptions) {
//   ... return 0; }   -- the body sees `options` (parsed) and `reporter`.
#define HIVEMIND_BENCH(name, description, Options)                                                 \
  static int hivemind_bench_##name(const Options& options, ::hivemind::bench::Reporter& reporter); \
  static const ::hivemind::bench::Registration<Options> hivemind_bench_registration_##name(        \
      #name, description, hivemind_bench_##name);                                                  \
  static int hivemind_bench_##name(const Options& options, ::hivemind::bench::Reporter& reporter)

// ---- small statistics helpers ----
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Nearest-rank percentile, p in [0, 100].
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(rank, v.size() - 1)];
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// "8B", "64KiB", "4MiB", "1GiB"
std::string size_label(size_t bytes);

}  // namespace hivemind::bench
