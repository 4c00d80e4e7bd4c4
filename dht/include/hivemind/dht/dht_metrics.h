// The Prometheus metrics of one DHT node: what `hivemind-dht --metrics-port` serves, and what any
// program hosting a node can add to its own registry.
//
// Families:
//   hivemind_dht_routing_table_size          peers in the node's routing table
//   hivemind_dht_requests_sent_total         requests this node sent
//   hivemind_dht_requests_received_total     requests it answered or refused
//   hivemind_dht_replies_received_total      replies to its requests
//   hivemind_dht_unanswered_requests_total   its requests with no answer by their deadline, or
//                                            lost by the transport
//   hivemind_dht_error_replies_total         ERROR answers to its requests
//   hivemind_dht_malformed_requests_total    request frames that failed to decode
//   hivemind_dht_malformed_replies_total     reply frames that failed to decode
//   hivemind_dht_unmatched_replies_total     replies matching no outstanding request from that peer
//   hivemind_dht_rate_limited_total          requests refused by the rate limiter
//   hivemind_dht_bytes_sent_total, hivemind_dht_bytes_received_total
//
// Every value is read from the node at scrape time (Dht::stats(), Dht::peers()): nothing is added
// to the node's own paths.
#pragma once

#include <hivemind/common/metrics.h>
#include <hivemind/dht/dht.h>

namespace hivemind::dht {

// Registers the families above in `registry`, read from `node` at each scrape. `node` must outlive
// every scrape: stop the HTTP server serving `registry` before the node goes.
void register_dht_metrics(MetricsRegistry& registry, const Dht& node);

}  // namespace hivemind::dht
