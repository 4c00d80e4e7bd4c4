#include "server_metrics.h"

#include <string>

namespace hivemind::server {

namespace {

// 0.5 ms .. ~16 s: a nop round trip on loopback to a large batch on a loaded CPU.
const std::vector<double>& latency_buckets() {
  static const std::vector<double> buckets = exponential_buckets(0.0005, 2.0, 16);
  return buckets;
}

// 1 .. 16384 samples, powers of two (the default max_batch_size is 16384).
const std::vector<double>& batch_buckets() {
  static const std::vector<double> buckets = exponential_buckets(1.0, 2.0, 15);
  return buckets;
}

}  // namespace

CallMetrics CallMetrics::create(MetricsRegistry& registry, const std::string& uid,
                                const char* method) {
  const MetricLabels labels{{"expert", uid}, {"method", method}};
  CallMetrics m;
  m.requests =
      &registry.counter("hivemind_expert_requests_total", "Expert requests received", labels);
  m.errors = &registry.counter("hivemind_expert_errors_total",
                               "Expert requests answered with an error", labels);
  m.latency = &registry.histogram("hivemind_expert_request_seconds",
                                  "Seconds from a request's arrival to its reply",
                                  latency_buckets(), labels);
  m.batch_size =
      &registry.histogram("hivemind_expert_batch_size",
                          "Samples per batch run by the compute thread", batch_buckets(), labels);
  return m;
}

void CallMetrics::finished(bool ok, SteadyTime since) const {
  if (!ok) errors->inc();
  latency->observe(std::chrono::duration<double>(SteadyClock::now() - since).count());
}

}  // namespace hivemind::server
