// Private state of server::Server: the parts it is made of, each with one job, and the maintenance
// thread that runs their periodic work.
//
//   ThreadPlacement  where the compute and I/O threads run           (placement.h)
//   ServerNetwork    transport context, I/O thread, listener          (network.h)
//   ExpertAnnouncer  the DHT node (or declare hook), declarations     (announcer.h)
//   HostedExperts    backends, task pools, runtime, checkpoints       (hosted_experts.h)
//   ExpertMethods    info/forward/backward on the listener            (expert_methods.h)
//   StatsReporter    the periodic stats line                          (stats_reporter.h)
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <hivemind/common/metrics.h>
#include <hivemind/common/metrics_http_server.h>
#include <hivemind/server/server.h>

#include "announcer.h"
#include "expert_methods.h"
#include "hosted_experts.h"
#include "network.h"
#include "placement.h"
#include "stats_reporter.h"

namespace hivemind::server {

struct Server::Impl {
  ServerOptions options;
  // Before everything its series and callbacks point into; the HTTP server stops in shutdown().
  MetricsRegistry metrics;
  std::unique_ptr<MetricsHttpServer> metrics_http;
  // Built in this order by create(); any may be null when create() failed part-way.
  ThreadPlacement placement;
  std::unique_ptr<ServerNetwork> network;
  std::unique_ptr<ExpertAnnouncer> announcer;
  std::unique_ptr<HostedExperts> experts;
  std::unique_ptr<ExpertMethods> methods;
  StatsReporter stats;

  // Maintenance thread: declarations, periodic checkpoints, stats, and the requests below.
  std::mutex mutex;
  std::condition_variable cv;
  bool started = false;
  bool checkpoint_requested = false;
  bool shutdown_requested = false;
  bool stop_maintenance = false;
  std::thread maintenance;

  std::mutex shutdown_mutex;
  std::optional<Status> shutdown_result;

  ~Impl();
  Status start_metrics();
  Status declare();
  void maintenance_loop();
  Status shutdown(Milliseconds grace);
};

}  // namespace hivemind::server
