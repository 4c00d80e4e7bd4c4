// hivemind-dht: runs one DHT node until SIGINT/SIGTERM, or checks a running one.
//
//   hivemind-dht [--host H] [--port P] [--transport tcp|ucx|auto] [--initial-peers ADDR...|auto]
//                [--bootstrap-file F] [--identity FILE] [--bootstrap-timeout S]
//   hivemind-dht --check ADDR [--timeout S] [--experts PATTERN [--min-coverage F]]
//
// Prints the address others should use once listening, writes it atomically to the bootstrap file,
// and logs peers as they join and leave its routing table. Every flag also reads HIVEMIND_<FLAG>.
#include <csignal>
#include <cstdio>
#include <map>
#include <random>
#include <span>
#include <thread>

#include <CLI/CLI.hpp>

#include <hivemind/common/initial_peers.h>
#include <hivemind/common/logging.h>
#include <hivemind/common/metrics.h>
#include <hivemind/common/metrics_http_server.h>
#include <hivemind/common/version.h>
#include <hivemind/dht/dht.h>
#include <hivemind/dht/dht_metrics.h>
#include <hivemind/dht/expert_registry.h>
#include <hivemind/dht/uid_pattern.h>
#include <hivemind/dht/wire.h>
#include <hivemind/transport/swarm_key_flag.h>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

using hivemind::Deadline;
using hivemind::MetricsHttpServer;
using hivemind::MetricsHttpServerOptions;
using hivemind::MetricsRegistry;
using hivemind::Milliseconds;
namespace dht = hivemind::dht;

struct CheckOptions {
  std::string address;
  double timeout_s = 5;
  std::string experts;        // uid pattern to account for; empty: the node only
  double min_coverage = 1.0;  // fraction of `experts` that must be live
};

// Exit status: 0 healthy, 1 node unreachable or coverage below the threshold, 2 bad input or no
// client.
int check(const CheckOptions& o) {
  std::vector<std::string> uids;
  if (!o.experts.empty()) {
    auto expanded = dht::expand_uid_pattern(o.experts);
    if (!expanded.is_ok()) {
      std::fprintf(stderr, "hivemind-dht --check: --experts: %s\n",
                   expanded.status().message().c_str());
      return 2;
    }
    uids = std::move(expanded).value();
  }
  // A client-mode node: it asks, it is never added to anyone's table.
  dht::DhtOptions options;
  options.node.client_mode = true;
  options.node.request_timeout = Milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  auto started = dht::Dht::start(options);
  if (!started.is_ok()) {
    std::fprintf(stderr, "hivemind-dht --check: cannot start a client: %s\n",
                 started.status().to_string().c_str());
    return 2;
  }
  auto& client = **started;
  auto deadline = [&] {
    return Deadline::after(Milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
  };
  auto t0 = std::chrono::steady_clock::now();
  auto pong = client.ping(o.address, deadline());
  double rtt_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!pong.is_ok()) {
    std::printf("%s: no answer (%s)\n", o.address.c_str(), pong.status().to_string().c_str());
    return 1;
  }
  std::printf("%s: node %s answered in %.2f ms\n", o.address.c_str(), pong->id.hex().c_str(),
              rtt_ms);
  // What it knows: join through it, then look around (its own neighbourhood and a random point).
  hivemind::Status joined = client.bootstrap({o.address}, deadline());
  auto near = client.find_nearest(pong->id, 20, deadline());
  std::mt19937_64 rng(std::random_device{}());
  auto far = client.find_nearest(dht::NodeId::random(rng), 20, deadline());
  auto peers = client.peers();
  std::printf("peers reachable through it: %zu known after a lookup%s\n", peers.size(),
              joined.is_ok() ? "" : (" (join: " + joined.to_string() + ")").c_str());
  if (near.is_ok()) {
    std::printf("nearest to it (%zu answered):\n", near->size());
    for (const auto& c : *near)
      std::printf("  %s %s\n", c.id.short_hex().c_str(), c.address.c_str());
  }
  if (far.is_ok())
    std::printf("a lookup of a random id through it reached %zu nodes\n", far->size());

  int status = 0;
  if (!uids.empty()) {
    // Each expert's record: live or not, where, and until when its last declaration holds.
    std::printf("experts %s (%zu uids):\n", o.experts.c_str(), uids.size());
    size_t live = 0;
    std::map<std::string, size_t> per_endpoint;
    constexpr size_t kKeysPerGet = 256;
    for (size_t first = 0; first < uids.size(); first += kKeysPerGet) {
      std::span<const std::string> chunk(uids.data() + first,
                                         std::min(kKeysPerGet, uids.size() - first));
      auto records = client.get(chunk, deadline());
      const hivemind::DhtTime now = client.dht_now();
      for (size_t i = 0; i < chunk.size(); ++i) {
        std::optional<dht::ExpertAddress> expert;
        hivemind::DhtTime expiration = 0;
        if (records.is_ok() && (*records)[i] && (*records)[i]->regular) {
          expert = dht::decode_expert_address((*records)[i]->regular->value);
          expiration = (*records)[i]->regular->expiration;
        }
        if (expert && expert->uid == chunk[i]) {
          ++live;
          ++per_endpoint[expert->endpoint];
          std::printf("  %-24s live     %s, declared until %.1f s from now\n", chunk[i].c_str(),
                      expert->endpoint.c_str(), static_cast<double>(expiration - now) / 1000.0);
        } else {
          std::printf("  %-24s missing%s\n", chunk[i].c_str(),
                      records.is_ok() ? "" : (" (" + records.status().to_string() + ")").c_str());
        }
      }
    }
    const double coverage = static_cast<double>(live) / static_cast<double>(uids.size());
    std::printf("servers: %zu\n", per_endpoint.size());
    for (const auto& [endpoint, count] : per_endpoint)
      std::printf("  %s hosts %zu\n", endpoint.c_str(), count);
    const bool enough = coverage + 1e-12 >= o.min_coverage;
    std::printf("coverage: %zu of %zu experts live (%.1f%%), threshold %.1f%%: %s\n", live,
                uids.size(), 100.0 * coverage, 100.0 * o.min_coverage,
                enough ? "ok" : "BELOW THRESHOLD");
    if (!enough) status = 1;
  }
  auto stats = client.stats();
  std::printf("requests sent %llu, unanswered %llu\n",
              static_cast<unsigned long long>(stats.requests_sent),
              static_cast<unsigned long long>(stats.unanswered_requests));
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  if (hivemind::Status logging = hivemind::configure_logging_from_env(); !logging.is_ok()) {
    std::fprintf(stderr, "hivemind-dht: %s\n", logging.to_string().c_str());
    return 2;
  }
  CLI::App app{
      "hivemind-dht: a DHT node of a hivemind swarm (Kademlia, expiring records, expert registry)"};
  app.set_version_flag("--version", hivemind::version_line("hivemind-dht"));
  std::string host = "0.0.0.0", transport = "tcp", bootstrap_file, identity;
  CheckOptions check_options;
  int port = 0;
  std::vector<std::string> initial_peers;
  double bootstrap_timeout = 30;
  int metrics_port = -1;
  std::string metrics_host = "127.0.0.1";
  app.add_option("--host", host,
                 "address to listen on (0.0.0.0 announces this host's routable address)")
      ->envname("HIVEMIND_HOST");
  app.add_option("--port", port, "port to listen on (0: any free port)")
      ->envname("HIVEMIND_PORT")
      ->check(CLI::Range(0, 65535));
  app.add_option("--transport", transport, "tcp, ucx or auto")
      ->envname("HIVEMIND_TRANSPORT")
      ->check(CLI::IsMember({"tcp", "ucx", "auto"}));
  app.add_option("--initial-peers,--initial_peers", initial_peers,
                 "running nodes to join through: tcp://HOST:PORT, /ip4/HOST/tcp/PORT[/p2p/ID], or "
                 "auto (the head node of the Slurm allocation, port 31337)")
      ->envname("HIVEMIND_INITIAL_PEERS")
      ->delimiter(',');
  // This program is the one that writes the file the others (--bootstrap_file there) wait for.
  app.add_option("--bootstrap-file,--bootstrap_file", bootstrap_file,
                 "write this node's address here (atomically) once it listens")
      ->envname("HIVEMIND_BOOTSTRAP_FILE");
  app.add_option("--identity", identity,
                 "file holding this node's id (created on first start), so it keeps its place")
      ->envname("HIVEMIND_IDENTITY");
  app.add_option("--bootstrap-timeout", bootstrap_timeout,
                 "seconds to reach an initial peer before giving up")
      ->envname("HIVEMIND_BOOTSTRAP_TIMEOUT")
      ->check(CLI::PositiveNumber);
  app.add_option("--check", check_options.address,
                 "dial the node at this address and report what it sees, then exit "
                 "(1: no answer, or expert coverage below --min-coverage)");
  app.add_option("--timeout", check_options.timeout_s, "seconds per request with --check")
      ->check(CLI::PositiveNumber);
  app.add_option("--experts", check_options.experts,
                 "with --check: report these experts (a uid pattern, e.g. 'expert.[0:4].[0:4]') "
                 "and their declarations");
  app.add_option("--min-coverage,--min_coverage", check_options.min_coverage,
                 "with --check --experts: exit 1 when fewer than this fraction of them are live")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--metrics-port,--metrics_port", metrics_port,
                 "serve Prometheus metrics at http://<metrics-host>:<port>/metrics (0: any free "
                 "port, -1: off)")
      ->envname("HIVEMIND_METRICS_PORT")
      ->check(CLI::Range(-1, 65535))
      ->capture_default_str();
  app.add_option("--metrics-host,--metrics_host", metrics_host,
                 "address of the metrics endpoint (127.0.0.1: this host only; 0.0.0.0: every "
                 "interface)")
      ->envname("HIVEMIND_METRICS_HOST")
      ->capture_default_str();
  std::string swarm_key_file;
  app.add_option("--swarm-key-file,--swarm_key_file", swarm_key_file,
                 "swarm key (0600 file from hivemind-info --new-swarm-key): only peers with the "
                 "same key may connect (empty: anyone who can reach the port)")
      ->envname("HIVEMIND_SWARM_KEY_FILE");
  CLI11_PARSE(app, argc, argv);
  if (hivemind::Status key = hivemind::transport::adopt_swarm_key_file(swarm_key_file);
      !key.is_ok()) {
    std::fprintf(stderr, "hivemind-dht: %s\n", key.to_string().c_str());
    return 2;
  }

  if (!check_options.address.empty()) {
    auto address = hivemind::parse_peer_address(check_options.address);
    if (!address.is_ok()) {
      std::fprintf(stderr, "hivemind-dht --check: %s\n", address.status().message().c_str());
      return 2;
    }
    check_options.address = *address;
    return check(check_options);
  }

  hivemind::InitialPeersOptions peers;
  peers.initial_peers = initial_peers;
  auto resolved_peers = hivemind::gather_initial_peers(peers);
  if (!resolved_peers.is_ok()) {
    std::fprintf(stderr, "hivemind-dht: --initial-peers: %s\n",
                 resolved_peers.status().message().c_str());
    return 2;
  }
  dht::DhtOptions options;
  options.listen = transport + "://" + host + ":" + std::to_string(port);
  options.initial_peers = *resolved_peers;
  options.bootstrap_file = bootstrap_file;
  options.identity_file = identity;
  options.bootstrap_timeout = Milliseconds(static_cast<int64_t>(bootstrap_timeout * 1000));
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  auto started = dht::Dht::start(options);
  if (!started.is_ok()) {
    std::fprintf(stderr, "hivemind-dht: %s\n", started.status().to_string().c_str());
    return 1;
  }
  auto& node = **started;
  std::printf("hivemind-dht: node %s listening at %s\n", node.node_id().hex().c_str(),
              node.address().c_str());
  std::printf("join with: --initial-peers %s\n", node.address().c_str());
  // Declared after the node, so destroyed (stopped) before it: the scrape callbacks read the node.
  MetricsRegistry metrics;
  std::unique_ptr<MetricsHttpServer> metrics_http;
  if (metrics_port >= 0) {
    dht::register_dht_metrics(metrics, node);
    MetricsHttpServerOptions http;
    http.bind_address = metrics_host;
    http.port = static_cast<uint16_t>(metrics_port);
    auto served = MetricsHttpServer::start(metrics, http);
    if (!served.is_ok()) {
      std::fprintf(stderr, "hivemind-dht: --metrics-port: %s\n",
                   served.status().to_string().c_str());
      return 1;
    }
    metrics_http = std::move(served).value();
    std::printf("hivemind-dht: metrics at http://%s/metrics\n", metrics_http->address().c_str());
  }
  std::fflush(stdout);
  auto log = hivemind::logger("dht");
  std::map<dht::NodeId, std::string> known;
  while (!g_stop) {
    std::map<dht::NodeId, std::string> now;
    for (const auto& contact : node.peers())
      now.emplace(contact.id, contact.address);
    for (const auto& [id, address] : now) {
      if (!known.count(id))
        log->info("peer joined: {} at {} ({} known)", id.short_hex(), address, now.size());
    }
    for (const auto& [id, address] : known) {
      if (!now.count(id))
        log->info("peer left: {} at {} ({} known)", id.short_hex(), address, now.size());
    }
    known = std::move(now);
    for (int i = 0; i < 10 && !g_stop; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  log->info("stopping");
  if (metrics_http) metrics_http->stop();
  return 0;
}
