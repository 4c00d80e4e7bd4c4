// A small thread-safe metrics registry, exposed to Prometheus through prometheus-cpp.
//
// Servers count requests and errors per expert, batch sizes and latencies, queue depth, bytes per
// transport; trainers count their expert calls (client/client_metrics.h); a scrape of
// `--metrics-port` (common/metrics_http_server.h) collects them all. Updating a metric is a
// lock-free atomic operation on an object the caller keeps a reference to, so hot paths pay no
// lookup and no lock; only registration and collection take the registry's mutex.
//
// Why our own Counter/Gauge/Histogram rather than prometheus-cpp's: a prometheus-cpp histogram
// takes a mutex on every observation and costs about twice ours (docs/benchmarks.md,
// `hivemind-bench metrics`). So the objects hot paths touch stay these relaxed atomics, and the
// exposition is prometheus-cpp's: MetricsRegistry is a prometheus::Collectable whose Collect()
// snapshots our series into prometheus::MetricFamily values (what any prometheus-cpp exposer or
// gateway takes), and prometheus::TextSerializer writes the text format. The HTTP endpoint is
// MetricsHttpServer (metrics_http_server.h says why not prometheus-cpp's Exposer).
//
// Registration errors (a malformed name, one name registered as two types, histogram buckets that
// do not increase) are programming errors found at startup: they throw std::invalid_argument rather
// than return a Status, so a metric declaration stays one line.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

namespace hivemind {

// Label name/value pairs. Order does not matter: {a,b} and {b,a} name the same series.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// A value that only goes up (requests, errors, bytes).
class Counter {
 public:
  // Negative and NaN increments are ignored: a counter never goes down.
  void inc(double by = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down (queue depth, experts served).
class Gauge {
 public:
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  void inc(double by = 1.0) { value_.fetch_add(by, std::memory_order_relaxed); }
  void dec(double by = 1.0) { value_.fetch_sub(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into fixed buckets (batch sizes, latencies).
class Histogram {
 public:
  // `upper_bounds` must be finite and strictly increasing; the +Inf bucket is implicit.
  explicit Histogram(std::vector<double> upper_bounds);

  void observe(double value);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // one per upper bound, then +Inf (== count)
    double sum = 0.0;
    uint64_t count = 0;
  };
  // Bucket counts are read one by one, so under concurrent observe() a snapshot may miss an
  // observation in flight; it is always internally consistent (cumulative, +Inf bucket == count).
  Snapshot snapshot() const;
  const std::vector<double>& upper_bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1, not cumulative
  std::atomic<double> sum_{0.0};
};

// Bucket helpers, as in the Prometheus client libraries.
std::vector<double> linear_buckets(double start, double width, size_t count);
std::vector<double> exponential_buckets(double start, double factor, size_t count);

class MetricsRegistry final : public prometheus::Collectable {
 public:
  MetricsRegistry();
  ~MetricsRegistry() override;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // The series of family `name` with `labels`, created on first use; the same object on every later
  // call. References stay valid as long as the registry. `help` is taken from the first
  // registration.
  Counter& counter(std::string_view name, std::string_view help, const MetricLabels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const MetricLabels& labels = {});
  // Every series of one histogram family must use the same buckets.
  Histogram& histogram(std::string_view name, std::string_view help,
                       const std::vector<double>& upper_bounds, const MetricLabels& labels = {});

  // A gauge computed at each scrape (routing-table size, queue depth owned by another thread).
  // Re-registering the same series replaces the callback. The callback runs on the scraping thread,
  // outside the registry's lock, so it may take the owner's locks; it must be thread-safe and must
  // stay callable until the registry is destroyed or the callback is replaced.
  void gauge_callback(std::string_view name, std::string_view help, const MetricLabels& labels,
                      std::function<double()> read);

  // A counter owned elsewhere (bytes a transport moved), read at each scrape; the same rules as
  // gauge_callback. The callback must never return less than it did before.
  void counter_callback(std::string_view name, std::string_view help, const MetricLabels& labels,
                        std::function<double()> read);

  // A snapshot of every series, for prometheus-cpp (a TextSerializer, a Gateway): families sorted
  // by name, series by labels; histograms carry cumulative buckets with +Inf == count. Callbacks
  // run on the calling thread, outside the registry's lock.
  std::vector<prometheus::MetricFamily> Collect() const override;

  // Collect() in the text exposition format (prometheus::TextSerializer), for logs and tests.
  std::string render() const;

 private:
  struct Family;
  Family& family_locked(std::string_view name, std::string_view help, int type);
  std::shared_ptr<void>& series_locked(Family& family, const MetricLabels& labels);

  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_;
};

}  // namespace hivemind
