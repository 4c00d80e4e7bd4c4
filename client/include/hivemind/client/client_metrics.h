// A trainer's Prometheus metrics: the expert calls it makes, as a MeteredExpertCaller counts them.
//
// Families (labels in braces):
//   hivemind_client_calls_total{method}                  forward/backward calls started
//   hivemind_client_call_failures_total{method,reason}   of those, completed with an error; reason:
//                                                        timeout      the deadline passed
//                                                        unavailable  the expert could not be
//                                                                     reached or was not serving
//                                                                     (Unavailable, PeerClosed,
//                                                                     IoError, NotFound)
//                                                        error        anything else (a bad answer,
//                                                                     a rejected request)
//   hivemind_client_call_seconds{method}                 call start to completion, success or not
//
// Every series is resolved once here, so counting a call is a few relaxed atomics and no lookup.
// The bytes a trainer moves are the transport's (the server's hivemind_transport_* families count
// them on the other end); they are not counted here.
#pragma once

#include <array>

#include <hivemind/common/metrics.h>
#include <hivemind/common/status.h>

namespace hivemind::client {

enum class CallMethod { kForward, kBackward };
enum class CallFailure { kTimeout, kUnavailable, kError };

// Which failure reason a call's error counts as.
CallFailure classify_failure(StatusCode code);

class ClientMetrics {
 public:
  // Registers (or finds) the families above in `registry`, which must outlive this object.
  explicit ClientMetrics(MetricsRegistry& registry);

  void call_started(CallMethod method) const;
  // One call completed after `seconds`; `error` is Status::ok() for a success.
  void call_finished(CallMethod method, const Status& error, double seconds) const;

 private:
  struct PerMethod {
    Counter* calls = nullptr;
    std::array<Counter*, 3> failures{};  // indexed by CallFailure
    Histogram* latency = nullptr;
  };
  std::array<PerMethod, 2> methods_;  // indexed by CallMethod
};

}  // namespace hivemind::client
