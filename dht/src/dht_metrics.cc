#include <hivemind/dht/dht_metrics.h>

namespace hivemind::dht {

void register_dht_metrics(MetricsRegistry& registry, const Dht& node) {
  const Dht* dht = &node;
  registry.gauge_callback("hivemind_dht_routing_table_size",
                          "Peers in the routing table of this DHT node", {},
                          [dht] { return static_cast<double>(dht->peers().size()); });
  struct Counted {
    const char* name;
    const char* help;
    uint64_t NodeStats::*field;
  };
  static constexpr Counted kCounters[] = {
      {"hivemind_dht_requests_sent_total", "Requests this DHT node sent",
       &NodeStats::requests_sent},
      {"hivemind_dht_requests_received_total", "Requests this DHT node answered or refused",
       &NodeStats::requests_received},
      {"hivemind_dht_replies_received_total", "Replies to this DHT node's requests",
       &NodeStats::replies_received},
      {"hivemind_dht_unanswered_requests_total",
       "Requests with no answer by their deadline, or lost by the transport",
       &NodeStats::unanswered_requests},
      {"hivemind_dht_error_replies_total", "ERROR answers to this DHT node's requests",
       &NodeStats::error_replies},
      {"hivemind_dht_malformed_requests_total", "Request frames that failed to decode",
       &NodeStats::malformed_requests},
      {"hivemind_dht_malformed_replies_total", "Reply frames that failed to decode",
       &NodeStats::malformed_replies},
      {"hivemind_dht_unmatched_replies_total",
       "Replies that matched no outstanding request from that peer", &NodeStats::unmatched_replies},
      {"hivemind_dht_rate_limited_total", "Requests refused by the rate limiter",
       &NodeStats::rate_limited},
      {"hivemind_dht_bytes_sent_total", "Bytes of DHT frames sent", &NodeStats::bytes_sent},
      {"hivemind_dht_bytes_received_total", "Bytes of DHT frames received",
       &NodeStats::bytes_received},
  };
  for (const Counted& counted : kCounters) {
    registry.counter_callback(counted.name, counted.help, {}, [dht, field = counted.field] {
      return static_cast<double>(dht->stats().*field);
    });
  }
}

}  // namespace hivemind::dht
