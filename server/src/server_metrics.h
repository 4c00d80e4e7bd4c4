// The expert server's Prometheus metrics: what `--metrics-port` serves.
//
// Families (labels in braces):
//   hivemind_expert_requests_total{expert,method}        forward/backward requests received
//   hivemind_expert_errors_total{expert,method}          of those, answered with an error
//   hivemind_expert_request_seconds{expert,method}       arrival to reply handed to the transport
//   hivemind_expert_batch_size{expert,method}            samples per batch the compute thread ran
//   hivemind_expert_queue_depth{expert,method}           requests waiting in the TaskPool now
//   hivemind_expert_updates_total{expert}                optimizer steps taken
//   hivemind_server_experts                              experts this server hosts
//   hivemind_transport_{requests,error_replies,bytes_received,bytes_sent}_total{transport}
//                                                        every frame of the listener (experts and
//                                                        DHT)
//   hivemind_dht_routing_table_size                      peers in this server's DHT node
//
// Hot-path updates are relaxed atomics on objects resolved once at start; nothing is looked up per
// request.
#pragma once

#include <hivemind/common/clock.h>
#include <hivemind/common/metrics.h>

namespace hivemind::server {

// The series of one (expert, method) pair.
struct CallMetrics {
  Counter* requests = nullptr;
  Counter* errors = nullptr;
  Histogram* latency = nullptr;     // seconds
  Histogram* batch_size = nullptr;  // samples

  // Resolves the series in `registry` (created on first use).
  static CallMetrics create(MetricsRegistry& registry, const std::string& uid, const char* method);

  // One request answered, successfully or not, `since` its arrival.
  void finished(bool ok, SteadyTime since) const;
};

}  // namespace hivemind::server
