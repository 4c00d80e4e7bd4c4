// hivemind-bench dht: the DHT on the simulated network (routing, stores, kills, churn, join,
// gets/s) and 100 real nodes on loopback (get latency and throughput).
//
// Baselines, each measured in the same run: lookups over joined tables against lookups over "ideal"
// tables filled from global knowledge (the lookup model in docs/hivemind-reference.md); success
// after a kill with r = 5 against the same keys stored with r = 1; simulated gets/s against reads
// of a node's own storage; real get latency against one raw rpc round trip on the same loopback.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <set>
#include <thread>

#include <hivemind/dht/dht.h>
#include <hivemind/dht/sim_churn.h>
#include <hivemind/dht/sim_network.h>
#include <hivemind/transport/context.h>

#include "support/report.h"

namespace hivemind::bench {
namespace {

using dht::ChurnFigures;
using dht::ChurnMiss;
using dht::ChurnOptions;
using dht::GetOptions;
using dht::NodeId;
using dht::NodeOptions;
using dht::SimNetwork;
using dht::SimOptions;
using Clock = std::chrono::steady_clock;

NodeOptions sim_options() {
  NodeOptions options;
  options.request_timeout = std::chrono::seconds(1);
  return options;
}

struct DhtBenchOptions {
  std::vector<size_t> sizes{100, 1000, 10000};
  int gets = 1000;
  int nearest_queries = 300;
  size_t churn_nodes = 1000;
  int churn_seconds = 600;
  size_t real_nodes = 100;
  size_t real_threads = 8;
  bool skip_sim = false, skip_kills = false, skip_churn = false, skip_real = false;

  void declare(CLI::App& cli) {
    cli.add_option("--sizes", sizes, "simulated network sizes")
        ->delimiter(',')
        ->capture_default_str();
    cli.add_option("--gets", gets, "gets (and stores) per case")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option("--nearest-queries", nearest_queries, "nearest-node queries per size")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option("--churn-nodes", churn_nodes, "nodes of the churn run")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option("--churn-seconds", churn_seconds, "virtual seconds of the churn run")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option("--real-nodes", real_nodes, "real nodes on loopback")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_option("--real-threads", real_threads, "callers of the real-node throughput run")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cli.add_flag("--skip-sim", skip_sim, "skip the simulated routing cases");
    cli.add_flag("--skip-kills", skip_kills, "skip the kill cases");
    cli.add_flag("--skip-churn", skip_churn, "skip the churn run");
    cli.add_flag("--skip-real", skip_real, "skip the real nodes");
  }
};

struct GetFigures {
  double success = 0, hops_mean = 0, hops_p99 = 0, rpcs_mean = 0, wall_s = 0;
};

std::vector<NodeId> store_keys(SimNetwork& net, const std::string& prefix, int count,
                               std::mt19937_64& rng, double* rpcs_mean = nullptr,
                               size_t from = SIZE_MAX) {
  std::vector<NodeId> keys;
  auto alive = net.alive_nodes();
  double rpcs = 0;
  for (int i = 0; i < count; ++i) {
    NodeId key = NodeId::from_key(prefix + std::to_string(i));
    keys.push_back(key);
    size_t node = from != SIZE_MAX ? from : alive[rng() % alive.size()];
    auto result = net.store(node, {{key, std::nullopt, prefix + "v" + std::to_string(i),
                                    net.dht_now() + 3'000'000, false}});
    rpcs += static_cast<double>(result.rpcs);
  }
  if (rpcs_mean) *rpcs_mean = rpcs / count;
  return keys;
}

GetFigures run_gets(SimNetwork& net, const std::vector<NodeId>& keys, const std::string& prefix,
                    std::mt19937_64& rng, const std::set<size_t>& exclude = {}) {
  std::vector<size_t> askers;
  for (size_t i : net.alive_nodes()) {
    if (!exclude.count(i)) askers.push_back(i);
  }
  GetFigures f;
  std::vector<double> hops;
  auto t0 = Clock::now();
  int ok = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto result = net.get(askers[rng() % askers.size()], {keys[i]}, GetOptions{.latest = true});
    bool found = result.records[0] && result.records[0]->regular &&
                 result.records[0]->regular->value == prefix + "v" + std::to_string(i);
    ok += found;
    if (found) hops.push_back(result.hops[0]);
    f.rpcs_mean += static_cast<double>(result.rpcs);
  }
  f.wall_s = seconds_since(t0);
  f.success = ok / static_cast<double>(keys.size());
  f.rpcs_mean /= static_cast<double>(keys.size());
  for (double h : hops)
    f.hops_mean += h;
  f.hops_mean /= std::max<double>(1, static_cast<double>(hops.size()));
  f.hops_p99 = percentile(hops, 99);
  return f;
}

void routing(Reporter& reporter, size_t n, int gets, int queries) {
  std::mt19937_64 rng(1000 + n);
  std::string c = "sim/N=" + std::to_string(n);
  SimNetwork net(SimOptions{.seed = 1000 + n});
  auto t0 = Clock::now();
  Status grown = net.grow(n, std::max<size_t>(1, n / 50), sim_options());
  double join_s = seconds_since(t0);
  if (!grown.is_ok()) {
    reporter.note("{}: join failed: {}", c, grown.to_string());
    return;
  }
  reporter.report({c, "join_wall_s", join_s, "s", "", 0});
  reporter.report(
      {c, "join_msgs_per_node", static_cast<double>(net.stats().messages) / n, "msgs", "", 0});

  SimNetwork ideal(SimOptions{.seed = 2000 + n});
  for (size_t i = 0; i < n; ++i)
    ideal.add_node(sim_options());
  ideal.fill_ideal_tables();

  double store_rpcs = 0, ideal_store_rpcs = 0;
  auto keys = store_keys(net, "k", gets, rng, &store_rpcs);
  auto ideal_keys = store_keys(ideal, "k", gets, rng, &ideal_store_rpcs);
  GetFigures joined = run_gets(net, keys, "k", rng);
  GetFigures perfect = run_gets(ideal, ideal_keys, "k", rng);
  reporter.report({c, "get_success", joined.success, "fraction", "ideal_tables", perfect.success});
  reporter.report(
      {c, "get_hops_mean", joined.hops_mean, "hops", "ideal_tables", perfect.hops_mean});
  reporter.report({c, "get_hops_p99", joined.hops_p99, "hops", "ideal_tables", perfect.hops_p99});
  reporter.report({c, "rpcs_per_get", joined.rpcs_mean, "rpcs", "ideal_tables", perfect.rpcs_mean});
  reporter.report({c, "rpcs_per_store", store_rpcs, "rpcs", "ideal_tables", ideal_store_rpcs});

  // T1: nearest nodes against brute force.
  std::vector<NodeId> ids;
  for (size_t i : net.alive_nodes())
    ids.push_back(net.node(i).self().id);
  double top1 = 0, jaccard = 0;
  for (int q = 0; q < queries; ++q) {
    NodeId target = NodeId::random(rng);
    auto result = net.find_nearest(rng() % n, target, 20);
    size_t k = std::min<size_t>(20, ids.size());
    std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(),
                      [&](const NodeId& a, const NodeId& b) { return a.closer_to(target, b); });
    std::set<NodeId> truth(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k)), found;
    for (const auto& contact : result.contacts)
      found.insert(contact.id);
    if (!result.contacts.empty() && result.contacts[0].id == ids[0]) top1 += 1;
    size_t both = 0;
    for (const auto& id : found)
      both += truth.count(id);
    jaccard += static_cast<double>(both) / static_cast<double>(truth.size() + found.size() - both);
  }
  reporter.report({c, "nearest_top1", top1 / queries, "fraction", "", 0});
  reporter.report({c, "nearest_jaccard20", jaccard / queries, "fraction", "", 0});

  if (n == 1000) {
    // Simulated gets per second on one core (the whole network is simulated on this thread) against
    // reads of one node's own storage.
    auto t1 = Clock::now();
    size_t reads = 0;
    dht::Node& node = net.node(0);
    while (seconds_since(t1) < 0.2) {
      for (const auto& key : keys)
        reads += node.local_get(key).has_value() ? 1 : 1;
    }
    double local_per_s = static_cast<double>(reads) / seconds_since(t1);
    reporter.report(
        {c, "sim_gets_per_s", gets / joined.wall_s, "gets/s", "local_storage_read", local_per_s});
  }
}

void kills(Reporter& reporter, double fraction, int gets) {
  std::mt19937_64 rng(3000 + static_cast<uint64_t>(fraction * 100));
  std::string c = "sim/N=1000/kill" + std::to_string(static_cast<int>(fraction * 100)) + "%";
  SimNetwork net(SimOptions{.seed = 3000 + static_cast<uint64_t>(fraction * 100)});
  if (!net.grow(1000, 20, sim_options()).is_ok()) return;
  // The same kind of keys stored with one replica, by a node whose replication factor is 1.
  NodeOptions single = sim_options();
  single.replicas = 1;
  size_t writer = net.add_node(single);
  (void)net.bootstrap(writer, {net.address(0)});
  auto keys = store_keys(net, "r5-", gets, rng);
  auto single_keys = store_keys(net, "r1-", gets, rng, nullptr, writer);
  auto alive = net.alive_nodes();
  alive.erase(std::remove(alive.begin(), alive.end(), writer), alive.end());
  std::shuffle(alive.begin(), alive.end(), rng);
  for (size_t i = 0; i < static_cast<size_t>(fraction * static_cast<double>(alive.size())); ++i)
    net.kill(alive[i]);
  std::set<size_t> exclude = {writer};
  GetFigures r5 = run_gets(net, keys, "r5-", rng, exclude);
  GetFigures r1 = run_gets(net, single_keys, "r1-", rng, exclude);
  reporter.report({c, "get_success_r5", r5.success, "fraction", "same_keys_r1", r1.success});
  reporter.report({c, "rpcs_per_get", r5.rpcs_mean, "rpcs", "", 0});
  keys = store_keys(net, "r5-", gets, rng);  // one re-declare
  GetFigures again = run_gets(net, keys, "r5-", rng, exclude);
  reporter.report({c, "get_success_after_redeclare", again.success, "fraction", "", 0});
}

void churn(Reporter& reporter, size_t nodes, int seconds) {
  std::string c = "sim/N=" + std::to_string(nodes) + "/churn1%/s";
  SimNetwork net(SimOptions{
      .seed = 4000, .min_latency = Milliseconds(5), .max_latency = Milliseconds(50), .loss = 0.01});
  std::mt19937_64 rng(4000);
  NodeOptions options = sim_options();
  if (!net.grow(nodes, 20, options).is_ok()) return;
  ChurnOptions scenario;
  scenario.seconds = seconds;
  scenario.live_gets_per_second = 5;
  if (std::getenv("HIVEMIND_DHT_BENCH_DEBUG")) {
    scenario.on_miss = [&](const ChurnMiss& miss) {
      size_t holders = 0;
      for (size_t i : net.alive_nodes())
        holders += net.node(i).storage().contains(miss.key, net.dht_now());
      size_t table = 0, dead_entries = 0;
      if (net.alive(miss.asker)) {
        for (const auto& contact : net.node(miss.asker).routing_table().all()) {
          ++table;
          bool alive = false;
          for (size_t i : net.alive_nodes())
            alive |= net.node(i).self().id == contact.id;
          dead_entries += !alive;
        }
      }
      reporter.note(
          "miss: {} rpcs {} hops {} after {} ms; live holders {}; asker's table {} ({} dead)",
          miss.result.status.to_string(), miss.result.rpcs, miss.result.hops[0], miss.after.count(),
          holders, table, dead_entries);
    };
  }
  auto t0 = Clock::now();
  ChurnFigures f = dht::run_churn(net, options, scenario, rng);
  reporter.note(
      "{}: {} virtual s in {:.1f} s wall, {} live-expert gets, {} lookups of dead experts", c,
      seconds, seconds_since(t0), f.live_gets, f.dead_checks);
  reporter.report({c, "live_get_success", f.live_success(), "fraction", "", 0});
  reporter.report({c, "dead_seen_after_61s",
                   static_cast<double>(f.dead_seen) / std::max<size_t>(1, f.dead_checks),
                   "fraction", "", 0});
  reporter.report(
      {c, "get_latency_p50", percentile(f.live_get_latency_ms, 50), "ms(virtual)", "", 0});
  reporter.report(
      {c, "get_latency_p99", percentile(f.live_get_latency_ms, 99), "ms(virtual)", "", 0});
}

void real_nodes(Reporter& reporter, size_t count, int gets, size_t threads) {
  std::string c = "tcp-loopback/N=" + std::to_string(count);
  auto context = transport::Context::create(transport::ContextOptions::from_env().value()).value();
  // Nodes share a few I/O threads: one per node would be 100 busy-polling threads on 2 cores.
  std::vector<std::shared_ptr<transport::Worker>> workers;
  for (int i = 0; i < 4; ++i)
    workers.push_back(transport::Worker::create(context, "hm-dht" + std::to_string(i)).value());
  std::vector<std::unique_ptr<dht::Dht>> nodes;
  auto options_for = [&](size_t i, std::vector<std::string> peers) {
    dht::DhtOptions o;
    o.listen = "tcp://127.0.0.1:0";
    o.initial_peers = std::move(peers);
    o.worker = workers[i % workers.size()];
    o.seed = 5000 + i;
    return o;
  };
  auto t0 = Clock::now();
  for (size_t i = 0; i < count; ++i) {
    std::vector<std::string> peers;
    if (!nodes.empty()) peers.push_back(nodes[(i * 7919) % nodes.size()]->address());
    auto node = dht::Dht::start(options_for(i, peers));
    if (!node.is_ok()) {
      reporter.note("{}: node {} failed to start: {}", c, i, node.status().to_string());
      return;
    }
    nodes.push_back(std::move(node).value());
  }
  reporter.report({c, "join_all_wall_s", seconds_since(t0), "s", "", 0});

  std::mt19937_64 rng(6000);
  std::vector<std::string> keys;
  for (int i = 0; i < gets; ++i)
    keys.push_back("key-" + std::to_string(i));
  for (size_t begin = 0; begin < keys.size(); begin += 64) {
    std::vector<dht::DhtStoreItem> items;
    for (size_t i = begin; i < std::min(keys.size(), begin + 64); ++i) {
      items.push_back({keys[i], std::nullopt, "v" + keys[i], nodes[0]->dht_now() + 600'000});
    }
    (void)nodes[rng() % nodes.size()]->store(items, Deadline::after(std::chrono::seconds(30)));
  }
  // Latency: one get at a time from a node, asking the network every time.
  std::vector<double> latency;
  int found = 0;
  for (const auto& key : keys) {
    auto& asker = *nodes[rng() % nodes.size()];
    std::vector<std::string> one = {key};
    auto t = Clock::now();
    auto result =
        asker.get(one, Deadline::after(std::chrono::seconds(10)), GetOptions{.latest = true});
    latency.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
    found += result.is_ok() && (*result)[0].has_value();
  }
  // Baseline: one raw rpc round trip on the same kind of worker and loopback.
  auto echo_server = transport::rpc::Server::create(workers[0], "tcp://127.0.0.1:0").value();
  echo_server->handle("echo", [](transport::Message request, transport::rpc::Responder responder) {
    responder.reply(std::move(request));
  });
  auto echo_client = transport::rpc::Client::create(workers[1]);
  std::vector<double> rtt;
  for (int i = 0; i < 1000; ++i) {
    transport::Message m;
    m.metadata.assign(100, 1);
    auto t = Clock::now();
    auto reply = echo_client
                     ->call(echo_server->address(), "echo", std::move(m),
                            Deadline::after(std::chrono::seconds(5)))
                     .get();
    rtt.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
  }
  reporter.report({c, "get_success", found / static_cast<double>(gets), "fraction", "", 0});
  reporter.report(
      {c, "get_p50", percentile(latency, 50), "ms", "rpc_rtt_p50", percentile(rtt, 50)});
  reporter.report(
      {c, "get_p99", percentile(latency, 99), "ms", "rpc_rtt_p99", percentile(rtt, 99)});

  // Throughput: `threads` callers, each one get at a time, for a fixed number of gets.
  std::atomic<int> next{0}, ok{0};
  auto t2 = Clock::now();
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937_64 local(7000 + t);
      for (int i = next++; i < gets; i = next++) {
        std::vector<std::string> one = {keys[static_cast<size_t>(i)]};
        auto result = nodes[local() % nodes.size()]->get(
            one, Deadline::after(std::chrono::seconds(10)), GetOptions{.latest = true});
        ok += result.is_ok() && (*result)[0].has_value();
      }
    });
  }
  for (auto& th : pool)
    th.join();
  double gets_per_s = gets / seconds_since(t2);
  reporter.report({c, "gets_per_s_" + std::to_string(threads) + "threads", gets_per_s, "gets/s",
                   "rpc_round_trips_per_s", 1000.0 / std::max(1e-9, median(rtt))});
  nodes.clear();
  echo_client->close();
  echo_server->close();
  for (auto& w : workers)
    w->stop();
}

}  // namespace

HIVEMIND_BENCH(
    dht,
    "Kademlia DHT: simulated routing, kills, churn, 10k join, gets/s; 100 real nodes on loopback",
    DhtBenchOptions) {
  reporter.note("machine: {} hardware threads; simulated figures run on one thread",
                std::thread::hardware_concurrency());
  if (!options.skip_sim) {
    for (size_t n : options.sizes)
      routing(reporter, n, options.gets, options.nearest_queries);
  }
  if (!options.skip_kills) {
    kills(reporter, 0.3, options.gets);
    kills(reporter, 0.5, options.gets);
  }
  if (!options.skip_churn) churn(reporter, options.churn_nodes, options.churn_seconds);
  if (!options.skip_real)
    real_nodes(reporter, options.real_nodes, options.gets, options.real_threads);
  return 0;
}

}  // namespace hivemind::bench
