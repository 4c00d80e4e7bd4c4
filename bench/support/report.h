// Reporting and registration for hivemind-bench.
//
// Every benchmark measures its baseline in the same run and reports each measurement with it, so
// the ratio printed is between numbers taken on the same machine under the same load. With --json
// each measurement is one line:
//   {"bench":"transport","case":"tcp/4MiB","metric":"bandwidth_MBps","value":N,"unit":"MB/s",
//    "baseline":"raw_tcp","baseline_value":N,"ratio":N}
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

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

// Command-line arguments after the benchmark name, --json removed.
struct Args {
  std::vector<std::string> values;
  // The value of "--name V" or "--name=V"; `fallback` when absent.
  std::string get(const std::string& name, const std::string& fallback) const;
  long long get_int(const std::string& name, long long fallback) const;
  double get_double(const std::string& name, double fallback) const;
  bool has(const std::string& name) const;
};

using BenchFunction = std::function<int(const Args&, Reporter&)>;

struct Registration {
  Registration(const char* name, const char* description, BenchFunction run);
};

// HIVEMIND_BENCH(transport, "RPC latency and bandwidth per backend vs ucx_perftest and raw
// sockets") { ... return 0; }   -- the body sees `args` and `reporter`.
#define HIVEMIND_BENCH(name, description)                                          \
  static int hivemind_bench_##name(const ::hivemind::bench::Args& args,            \
                                   ::hivemind::bench::Reporter& reporter);         \
  static const ::hivemind::bench::Registration hivemind_bench_registration_##name( \
      #name, description, hivemind_bench_##name);                                  \
  static int hivemind_bench_##name(const ::hivemind::bench::Args& args,            \
                                   ::hivemind::bench::Reporter& reporter)

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
