#include <vector>

#include <hivemind/client/client_metrics.h>

namespace hivemind::client {
namespace {

// 0.5 ms .. ~16 s, the server's request buckets: a nop round trip on loopback up to a call that
// waits out a long forward_timeout.
const std::vector<double>& latency_buckets() {
  static const std::vector<double> buckets = exponential_buckets(0.0005, 2.0, 16);
  return buckets;
}

const char* method_name(CallMethod method) {
  return method == CallMethod::kForward ? "forward" : "backward";
}

const char* failure_name(CallFailure failure) {
  switch (failure) {
    case CallFailure::kTimeout:
      return "timeout";
    case CallFailure::kUnavailable:
      return "unavailable";
    case CallFailure::kError:
      break;
  }
  return "error";
}

}  // namespace

CallFailure classify_failure(StatusCode code) {
  switch (code) {
    case StatusCode::kTimeout:
      return CallFailure::kTimeout;
    case StatusCode::kUnavailable:
    case StatusCode::kPeerClosed:
    case StatusCode::kIoError:
    case StatusCode::kNotFound:
      return CallFailure::kUnavailable;
    default:
      return CallFailure::kError;
  }
}

ClientMetrics::ClientMetrics(MetricsRegistry& registry) {
  for (CallMethod method : {CallMethod::kForward, CallMethod::kBackward}) {
    PerMethod& m = methods_[static_cast<size_t>(method)];
    const MetricLabels labels{{"method", method_name(method)}};
    m.calls = &registry.counter("hivemind_client_calls_total", "Expert calls this trainer started",
                                labels);
    for (CallFailure failure :
         {CallFailure::kTimeout, CallFailure::kUnavailable, CallFailure::kError}) {
      m.failures[static_cast<size_t>(failure)] =
          &registry.counter("hivemind_client_call_failures_total",
                            "Expert calls that completed with an error, by reason",
                            {{"method", method_name(method)}, {"reason", failure_name(failure)}});
    }
    m.latency = &registry.histogram("hivemind_client_call_seconds",
                                    "Seconds from an expert call's start to its completion",
                                    latency_buckets(), labels);
  }
}

void ClientMetrics::call_started(CallMethod method) const {
  methods_[static_cast<size_t>(method)].calls->inc();
}

void ClientMetrics::call_finished(CallMethod method, const Status& error, double seconds) const {
  const PerMethod& m = methods_[static_cast<size_t>(method)];
  if (!error.is_ok()) m.failures[static_cast<size_t>(classify_failure(error.code()))]->inc();
  m.latency->observe(seconds);
}

}  // namespace hivemind::client
