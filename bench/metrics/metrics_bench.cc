// hivemind-bench metrics [--json] [--ops N] [--reps R] [--threads T]
//
// The hot-path cost of a metric update: a counter increment and a histogram observation on the
// project's MetricsRegistry (common/metrics.h: relaxed atomics, no lock) against the same on
// prometheus-cpp's Registry (core 1.0.1: a compare-and-swap loop for a counter, a mutex per
// histogram), measured in the same run. Each case runs with one thread and with T threads updating
// the same series, as a server's I/O and compute threads do. Figure: nanoseconds per update as one
// thread sees it (wall time / updates per thread), median of R repetitions; ratio = prometheus-cpp
// / hand-written.
#include <chrono>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <hivemind/common/metrics.h>

#include "support/report.h"

namespace hivemind::bench {
namespace {

struct MetricsBenchOptions {
  long long ops = 2'000'000;
  int reps = 5;
  int threads = 2;

  void declare(CLI::App& cli) {
    cli.add_option("--ops", ops, "updates per thread per repetition")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option("--reps", reps, "repetitions (the median is reported)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option("--threads", threads, "threads of the contended cases")
        ->check(CLI::Range(2, 256))
        ->capture_default_str();
  }
};

// Nanoseconds per update: `threads` threads each run update(i) for i in [0, ops), all at once. A
// template, so the update is inlined into the loop: no indirect call dilutes the figure.
template <typename Update>
double ns_per_update(int threads, long long ops, const Update& update) {
  std::vector<std::thread> pool;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (long long i = 0; i < ops; ++i)
        update(i);
    });
  }
  for (auto& thread : pool)
    thread.join();
  return seconds_since(start) * 1e9 / static_cast<double>(ops);
}

template <typename Update>
double median_ns(const MetricsBenchOptions& o, int threads, const Update& update) {
  std::vector<double> runs;
  for (int r = 0; r < o.reps; ++r)
    runs.push_back(ns_per_update(threads, o.ops, update));
  return median(runs);
}

// Observations spread over the buckets, as latencies are: 1 us .. ~16 ms.
double latency_of(long long i) {
  return 1e-6 * static_cast<double>(1LL << (i % 15));
}

}  // namespace

HIVEMIND_BENCH(
    metrics, "metric updates: prometheus-cpp's counter and histogram vs the hand-written registry",
    MetricsBenchOptions) {
  const std::vector<double> bounds = exponential_buckets(1e-6, 2, 16);
  MetricsRegistry ours;
  Counter& our_counter = ours.counter("bench_requests_total", "requests", {{"expert", "e0"}});
  Histogram& our_histogram =
      ours.histogram("bench_latency_seconds", "latency", bounds, {{"expert", "e0"}});

  auto theirs = std::make_shared<prometheus::Registry>();
  prometheus::Counter& their_counter = prometheus::BuildCounter()
                                           .Name("bench_requests_total")
                                           .Help("requests")
                                           .Register(*theirs)
                                           .Add({{"expert", "e0"}});
  prometheus::Histogram& their_histogram = prometheus::BuildHistogram()
                                               .Name("bench_latency_seconds")
                                               .Help("latency")
                                               .Register(*theirs)
                                               .Add({{"expert", "e0"}}, bounds);

  reporter.note("metrics: {} updates per thread, median of {}, {} hardware threads", options.ops,
                options.reps, std::thread::hardware_concurrency());
  for (int threads : {1, options.threads}) {
    const std::string suffix = "/" + std::to_string(threads) + "thread" + (threads > 1 ? "s" : "");
    double hand = median_ns(options, threads, [&](long long) { our_counter.inc(); });
    double prom = median_ns(options, threads, [&](long long) { their_counter.Increment(); });
    reporter.report({"counter_inc" + suffix, "ns_per_update", prom, "ns", "hand_written", hand});
    hand = median_ns(options, threads, [&](long long i) { our_histogram.observe(latency_of(i)); });
    prom =
        median_ns(options, threads, [&](long long i) { their_histogram.Observe(latency_of(i)); });
    reporter.report(
        {"histogram_observe" + suffix, "ns_per_update", prom, "ns", "hand_written", hand});
  }
  // Both counted every update: a check that the loops were not optimized away.
  const double expected = static_cast<double>(options.ops) * options.reps * (1 + options.threads);
  if (our_counter.value() != expected || their_counter.Value() != expected) {
    reporter.note("metrics: counters disagree with the updates made ({} / {} / {})",
                  our_counter.value(), their_counter.Value(), expected);
    return 1;
  }
  return 0;
}

}  // namespace hivemind::bench
