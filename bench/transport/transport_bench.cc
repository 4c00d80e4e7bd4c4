// hivemind-bench transport [--json] [--quick] [--backends tcp,ucx_tcp,ucx_posix] [--rpcs N]
//                          [--sizes B,...] [--skip-setup] [--spin-us N]
//                          [--device-sizes-mib M,...] [--device-only] [--skip-device]
//
// Per backend, at 8 B / 64 KiB / 4 MiB / 64 MiB: RPC echo half round trip and one-way streaming
// bandwidth (a window of calls to a sink that answers with an empty message), each next to a
// baseline measured in the same run: ucx_perftest ucp_am_lat / ucp_am_bw with the same UCX_TLS for
// the UCX backends (and ucx_perftest -e: endpoints with peer-failure handling as ours, which UCX
// keeps off cma; for latency at every size, for bandwidth from 64 KiB), a raw blocking TCP
// ping-pong / stream for the TCP backend. Then N
// small RPCs over one endpoint with the resident set size after warm-up and at the end. And the
// connection setup time (connect + first empty call) with a swarm key next to the same without one:
// what the swarm handshake adds (docs/security.md). Then the device-tensor cases (device_cases.h):
// staged, direct and CUDA IPC sends of device tensors to a peer process, skipped with the reason
// where no device is.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <sstream>

#include <hivemind/common/text.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/swarm_key.h>

#include "support/report.h"
#include "transport/baselines.h"
#include "transport/device_cases.h"

namespace {

using namespace hivemind;
using namespace hivemind::transport;
namespace base = hivemind::bench::transport_baselines;
using hivemind::bench::Measurement;

struct BackendSpec {
  std::string name;
  std::string scheme;
  std::string tls;  // UCX_TLS for ucx backends
};

struct Setup {
  std::shared_ptr<Context> context;
  std::shared_ptr<Worker> server_worker, client_worker;
  std::shared_ptr<rpc::Server> server;
  std::shared_ptr<rpc::Client> client;
  std::string address;
  Buffer request_landing, response_landing;
  ~Setup() {
    client.reset();
    server.reset();
    if (client_worker) client_worker->stop();
    if (server_worker) server_worker->stop();
  }
};

// Lands every tensor in one preallocated buffer (as a receiver with a buffer pool would): the
// benchmark measures the transport, not malloc of 64 MiB per message.
Allocator landing_allocator(Buffer landing) {
  return [landing](const IncomingFrame& in) -> Result<std::vector<Buffer>> {
    if (landing.size() == 0) return host_allocator()(in);
    std::vector<Buffer> out;
    for (uint64_t n : in.tensor_sizes) {
      if (n > landing.size()) return too_large_error("larger than the landing buffer");
      out.push_back(landing.slice(0, n));
    }
    return out;
  };
}

std::unique_ptr<Setup> make_setup(const BackendSpec& b, size_t max_bytes,
                                  std::chrono::microseconds spin,
                                  std::shared_ptr<const SwarmKey> swarm_key = nullptr) {
  auto s = std::make_unique<Setup>();
  ContextOptions o;
  if (!b.tls.empty()) o.ucx_config = {{"TLS", b.tls}};
  o.spin = spin;
  o.auth.swarm_key = std::move(swarm_key);
  o.auth.source_burst = 1 << 20;  // measures the handshake, not the per-source rate limit
  auto ctx = Context::create(o);
  if (!ctx.is_ok()) return nullptr;
  s->context = *ctx;
  s->server_worker = Worker::create(s->context, "bench-srv").value();
  s->client_worker = Worker::create(s->context, "bench-cli").value();
  auto server = rpc::Server::create(s->server_worker, b.scheme + "://127.0.0.1:0");
  if (!server.is_ok()) {
    std::fprintf(stderr, "transport bench: %s: %s\n", b.name.c_str(),
                 server.status().to_string().c_str());
    return nullptr;
  }
  s->server = *server;
  s->request_landing = Buffer::allocate_host(max_bytes);
  s->response_landing = Buffer::allocate_host(max_bytes);
  std::memset(s->request_landing.data(), 1, max_bytes);
  std::memset(s->response_landing.data(), 2, max_bytes);
  s->server->handle(
      "echo", [](Message m, rpc::Responder r) { r.reply(std::move(m)); },
      landing_allocator(s->request_landing));
  s->server->handle(
      "sink", [](Message, rpc::Responder r) { r.reply(Message{}); },
      landing_allocator(s->request_landing));
  s->client = rpc::Client::create(s->client_worker);
  s->address = s->server->address();
  return s;
}

// Runs `total` calls with at most `window` outstanding; calls are chained from completion callbacks
// on the I/O thread. Returns seconds from the end of warm-up to the last completion.
double run_calls(Setup& s, const std::string& method, const Message& msg, int total, int warm,
                 int window, bool* failed) {
  struct State {
    Setup* s;
    std::string method;
    Message msg;
    int total, warm, issued = 0, completed = 0;
    SteadyTime start{};
    std::promise<double> done;
    bool failed = false;
    Allocator alloc;
  };
  auto st = std::make_shared<State>();
  st->s = &s;
  st->method = method;
  st->msg = msg;
  st->total = total;
  st->warm = warm;
  st->alloc = landing_allocator(s.response_landing);
  if (warm == 0) st->start = SteadyClock::now();
  auto issue_one = std::make_shared<std::function<void()>>();
  std::weak_ptr<std::function<void()>> weak_issue = issue_one;
  *issue_one = [st, weak_issue] {
    ++st->issued;
    st->s->client->call(
        st->s->address, st->method, st->msg, Deadline::after(std::chrono::seconds(120)),
        [st, weak_issue](Result<Message> r) {
          if (!r.is_ok() && !st->failed) {
            st->failed = true;
            std::fprintf(stderr, "transport bench: call failed: %s\n",
                         r.status().to_string().c_str());
          }
          ++st->completed;
          if (st->completed == st->warm) st->start = SteadyClock::now();
          if (st->completed == st->total) {
            st->done.set_value(
                std::chrono::duration<double>(SteadyClock::now() - st->start).count());
            return;
          }
          if (st->issued < st->total) {
            if (auto f = weak_issue.lock(); f && *f) (*f)();
          }
        },
        st->alloc);
  };
  auto future = st->done.get_future();
  s.client_worker->post([st, issue_one, window] {
    for (int i = 0; i < window && st->issued < st->total; ++i)
      (*issue_one)();
  });
  double seconds = future.get();
  *failed = st->failed;
  // Break the self-reference so the state is freed.
  s.client_worker->run_sync([issue_one] { *issue_one = nullptr; });
  return seconds;
}

// One-way streaming on the message layer (what ucp_am_bw measures): `total` frames of `bytes` with
// at most `window` sends outstanding; timed from the first send until the receiver has them all.
double run_stream(Setup& s, const std::string& scheme, const Buffer& source, size_t bytes,
                  int total, int window, bool* failed) {
  // The receiver counts the warm-up frame too: the first frame fulfils `warmed`, frame 1 + total
  // fulfils `received`, so no count is ever reset while frames may still be landing.
  struct State {
    std::promise<void> warmed, received;
    int count = 0;  // touched only on the server's I/O thread
    int total = 0;
    Buffer landing;
    std::shared_ptr<Endpoint> accepted;
  };
  auto st = std::make_shared<State>();
  st->total = total;
  st->landing = s.request_landing;
  auto listener =
      s.server_worker->listen(scheme + "://127.0.0.1:0", [st](const std::shared_ptr<Endpoint>& ep) {
        st->accepted = ep;
        EndpointCallbacks cb;
        cb.allocate = [st](const FrameHeader&,
                           const IncomingFrame& in) -> Result<std::vector<Buffer>> {
          return std::vector<Buffer>{st->landing.slice(0, in.tensor_sizes[0])};
        };
        cb.on_frame = [st](ReceivedFrame) {
          ++st->count;
          if (st->count == 1) st->warmed.set_value();
          if (st->count == 1 + st->total) st->received.set_value();
        };
        return cb;
      });
  if (!listener.is_ok()) {
    *failed = true;
    return 1;
  }
  auto ep = s.client_worker->connect((*listener)->address(), {});
  if (!ep.is_ok()) {
    *failed = true;
    return 1;
  }
  // Warm the connection up (wireup) before timing: one frame, received before the clock starts.
  OutgoingFrame hello;
  hello.message.tensors.push_back(source.slice(0, 1));
  (*ep)->send(hello, [](Status) {});
  if (st->warmed.get_future().wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    *failed = true;
    return 1;
  }
  struct Sender {
    std::shared_ptr<Endpoint> ep;
    Buffer data;
    int total, window, issued = 0, in_flight = 0;
    bool failed = false;
  };
  auto sender = std::make_shared<Sender>();
  sender->ep = *ep;
  sender->data = source.slice(0, bytes);
  sender->total = total;
  sender->window = window;
  auto pump = std::make_shared<std::function<void()>>();
  std::weak_ptr<std::function<void()>> weak_pump = pump;
  *pump = [sender, weak_pump] {
    while (sender->in_flight < sender->window && sender->issued < sender->total) {
      ++sender->issued;
      ++sender->in_flight;
      OutgoingFrame f;
      f.message.tensors.push_back(sender->data);
      sender->ep->send(std::move(f), [sender, weak_pump](Status st) {
        if (!st.is_ok()) sender->failed = true;
        --sender->in_flight;
        if (auto p = weak_pump.lock(); p && *p) (*p)();
      });
    }
  };
  auto start = SteadyClock::now();
  s.client_worker->post([pump] { (*pump)(); });
  // A failed send means its frame never lands: give up after a deadline rather than wait forever.
  auto f = st->received.get_future();
  bool arrived = f.wait_for(std::chrono::seconds(120)) == std::future_status::ready;
  double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  *failed = sender->failed || !arrived;
  s.client_worker->run_sync([pump] { *pump = nullptr; });
  (*ep)->close();
  (*listener)->close();
  s.server_worker->run_sync([st] {
    if (st->accepted) st->accepted->close();
  });
  return seconds;
}

// Mean microseconds from a new connection's first call (an empty echo) to its reply, over `n` new
// connections: dial, the swarm handshake when keyed, one round trip.
double connection_setup_us(Setup& s, int n, bool* failed) {
  double total_us = 0;
  for (int i = 0; i < n; ++i) {
    auto client = rpc::Client::create(s.client_worker);  // its own connection cache: a new dial
    const auto start = SteadyClock::now();
    auto reply =
        client->call(s.address, "echo", Message{}, Deadline::after(std::chrono::seconds(10)));
    if (!reply.get().is_ok()) *failed = true;
    total_us += std::chrono::duration<double, std::micro>(SteadyClock::now() - start).count();
  }
  return total_us / n;
}

Message message_of(size_t bytes, const Buffer& source) {
  Message m;
  m.tensors.push_back(source.slice(0, bytes));
  return m;
}

int iterations(size_t bytes, bool latency, bool quick) {
  int n;
  if (latency)
    n = bytes <= 8 ? 20000 : bytes <= (64 << 10) ? 2000 : bytes <= (4 << 20) ? 100 : 10;
  else
    n = bytes <= 8 ? 200000 : bytes <= (64 << 10) ? 4000 : bytes <= (4 << 20) ? 200 : 20;
  return quick ? std::max(4, n / 10) : n;
}

struct TransportBenchOptions {
  bool quick = false;
  std::string backends = "tcp,ucx_tcp,ucx_posix";
  long long rpcs = 1000000;
  // Busy-poll window of the I/O threads (ContextOptions::spin), matched to each baseline's polling:
  // the raw TCP baseline blocks in read(), so the TCP backend sleeps at once (0); ucx_perftest
  // polls all the time, so the UCX backends poll for 100 ms. --spin-us overrides both.
  long long spin_us = -1;
  std::string sizes = "8,65536,4194304,67108864";
  bool skip_setup = false;
  // Every case with a swarm key (connections authenticated); UCX cases then move host payloads of
  // at least ContextOptions::ucx_same_host_copy_threshold by same-host copy. Case names get "+key".
  bool swarm_key = false;
  // The device-tensor cases (transport/device_cases.h), after the host cases.
  std::vector<size_t> device_sizes_mib{4, 64, 256};
  bool device_only = false;
  bool skip_device = false;
  bool device_peer = false;  // this process is the receiving peer of the device cases

  void declare(CLI::App& cli) {
    cli.add_flag("--quick", quick, "a tenth of the iterations");
    cli.add_option("--sizes", sizes, "message sizes in bytes, comma-separated (at most 64 MiB)")
        ->check(CLI::Validator(
            [](std::string& value) -> std::string {
              for (const std::string& item : split_list(value)) {
                char* end = nullptr;
                const unsigned long long n = std::strtoull(item.c_str(), &end, 10);
                if (item.empty() || *end != '\0' || n == 0 || n > (64ull << 20))
                  return "size '" + item + "' is not a byte count from 1 to 67108864";
              }
              return "";
            },
            "SIZES"))
        ->capture_default_str();
    cli.add_flag("--skip-device", skip_device, "skip the device-tensor cases");
    cli.add_option("--device-sizes-mib", device_sizes_mib, "device-tensor case sizes in MiB")
        ->check(CLI::Range(1, 4096))
        ->delimiter(',')
        ->capture_default_str();
    cli.add_flag("--device-only", device_only, "only the device-tensor cases");
    cli.add_flag("--device-peer", device_peer)->group("");  // the device cases' own re-execution
    cli.add_flag("--swarm-key", swarm_key,
                 "measure with a swarm key: authenticated connections, and UCX's same-host copy of "
                 "large payloads (transport/same_host_copy.h); case names get '+key'");
    cli.add_flag("--skip-setup", skip_setup,
                 "skip the connection-setup case (keyed vs open), which takes most of a quick run");
    cli.add_option("--backends", backends,
                   "which backends to measure, of tcp,ucx_tcp,ucx_posix,ucx_sysv")
        ->check(CLI::Validator(
            [](std::string& value) -> std::string {
              for (const std::string& name : split_list(value)) {
                if (name != "tcp" && name != "ucx_tcp" && name != "ucx_posix" && name != "ucx_sysv")
                  return "unknown backend '" + name + "' (tcp, ucx_tcp, ucx_posix, ucx_sysv)";
              }
              return "";
            },
            "BACKENDS"))
        ->capture_default_str();
    cli.add_option("--rpcs", rpcs, "small RPCs for the resident-memory run (0 to skip)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cli.add_option("--spin-us", spin_us,
                   "busy-poll time of the I/O threads before sleeping (default: 0 for tcp, "
                   "matching the blocking raw-socket baseline; 100000 for ucx, matching "
                   "ucx_perftest)")
        ->check(CLI::NonNegativeNumber);
  }
};

}  // namespace

HIVEMIND_BENCH(transport,
               "RPC half round trip and bandwidth per backend vs ucx_perftest and raw TCP",
               TransportBenchOptions) {
  const bool quick = options.quick;
  hivemind::bench::transport_device::DeviceCaseOptions device;
  for (size_t mib : options.device_sizes_mib)
    device.sizes.push_back(mib << 20);
  device.reps = quick ? 5 : 20;
  if (options.device_peer) return hivemind::bench::transport_device::run_device_peer(device);
  if (options.device_only)
    return hivemind::bench::transport_device::run_device_cases(device, reporter);
  const std::string& wanted = options.backends;
  const long long rpcs = options.rpcs;
  const long long spin_override = options.spin_us;
  std::vector<BackendSpec> all{{"tcp", "tcp", ""},
                               {"ucx_tcp", "ucx", "tcp"},
                               {"ucx_posix", "ucx", "posix,cma,tcp"},
                               {"ucx_sysv", "ucx", "sysv,cma,tcp"}};
  std::vector<size_t> sizes;
  for (const std::string& item : split_list(options.sizes))
    sizes.push_back(std::strtoull(item.c_str(), nullptr, 10));
  std::sort(sizes.begin(), sizes.end());
  int port = 20100;
  reporter.note(
      "transport: UCX {} (baseline: {}) | machine shared with parallel builds: figures are noisy",
      Context::ucx_version().empty() ? std::string("absent") : Context::ucx_version(),
      base::ucx_perftest_program());
  for (const auto& listed : all) {
    if (("," + wanted + ",").find("," + listed.name + ",") == std::string::npos) continue;
    BackendSpec b = listed;
    std::shared_ptr<const SwarmKey> key;
    if (options.swarm_key) {
      key = std::make_shared<const SwarmKey>(SwarmKey::generate().value());
      b.name += "+key";
    }
    long long spin_us = spin_override >= 0 ? spin_override : (b.scheme == "tcp" ? 0 : 100000);
    auto setup = make_setup(b, sizes.back(), std::chrono::microseconds(spin_us), key);
    if (!setup) {
      reporter.note("{}: unavailable in this build or on this machine, skipped", b.name);
      continue;
    }
    reporter.note("{}: server {}, I/O threads spin {} us", b.name, setup->address, spin_us);
    // perftest -e runs our endpoints' peer-failure mode: the baseline for what UCX itself
    // achieves under our guarantees, reported next to the plain perftest one.
    auto report_against_peer_failure_perftest =
        [&](const std::string& case_name, const std::string& test, const std::string& metric,
            double ours, const std::string& unit, size_t bytes, int n, int warm) {
          std::string why;
          auto v = base::ucx_perftest(test, b.tls, bytes, n, warm, port++, &why,
                                      {{"-e"}, {"UCX_MM_ERROR_HANDLING=y"}});
          if (v)
            reporter.report({case_name, metric, ours, unit,
                             "ucx_perftest_" + test.substr(4) + "_peer_errh", *v});
          else
            reporter.note("{}: no ucx_perftest -e baseline ({})", case_name, why);
        };
    Buffer source = Buffer::allocate_host(sizes.back());
    std::memset(source.data(), 3, sizes.back());
    for (size_t bytes : sizes) {
      std::string label = hivemind::bench::size_label(bytes);
      std::string case_name = b.name + "/" + label;
      bool failed = false;
      // Latency: one call at a time, echo of `bytes` both ways, like ucp_am_lat's ping-pong.
      int n = iterations(bytes, true, quick);
      int warm = std::max(1, n / 10);
      double s = run_calls(*setup, "echo", message_of(bytes, source), n + warm, warm, 1, &failed);
      double half_rtt = s / n / 2 * 1e6;
      std::string why;
      double baseline = 0;
      std::string baseline_name;
      if (b.scheme == "tcp") {
        baseline_name = "raw_tcp_pingpong";
        baseline = base::raw_tcp_half_rtt_us(bytes, n + warm);
      } else {
        baseline_name = "ucx_perftest_am_lat";
        auto v = base::ucx_perftest("ucp_am_lat", b.tls, bytes, n, warm, port++, &why);
        if (v)
          baseline = *v;
        else
          reporter.note("{}: no ucx_perftest baseline ({})", case_name, why);
      }
      if (!failed)
        reporter.report({case_name, "half_rtt_us", half_rtt, "us", baseline_name, baseline});
      // perftest's endpoints in our endpoints' peer-failure mode (UCX adds keepalive to their
      // posix lane). They are dialed by worker address, so they lack the tcp lane that UCX's
      // connection manager puts on ours and polls on every progress call.
      if (b.scheme != "tcp" && !failed)
        report_against_peer_failure_perftest(case_name, "ucp_am_lat", "half_rtt_us", half_rtt, "us",
                                             bytes, n, warm);
      // Bandwidth: one-way streaming of frames carrying `bytes` on the message layer.
      n = iterations(bytes, false, quick);
      warm = std::max(1, n / 20);
      int window = bytes <= (64 << 10) ? 64 : 4;
      s = run_stream(*setup, b.scheme, source, bytes, n, window, &failed);
      double mbps = static_cast<double>(bytes) * n / s / 1e6;
      if (b.scheme == "tcp") {
        baseline_name = "raw_tcp_stream";
        baseline = base::raw_tcp_stream_MBps(bytes, n);
      } else {
        baseline_name = "ucx_perftest_am_bw";
        auto v = base::ucx_perftest("ucp_am_bw", b.tls, bytes, n, warm, port++, &why);
        baseline = v.value_or(0);
        if (!v) reporter.note("{}: no ucx_perftest baseline ({})", case_name, why);
      }
      if (!failed)
        reporter.report({case_name, "bandwidth_MBps", mbps, "MB/s", baseline_name, baseline});
      // Our endpoints ask for peer-failure handling, which keeps UCX off cma (no single-copy
      // rendezvous on one host: posix's copy-in copy-out instead).
      if (b.scheme != "tcp" && !failed && bytes >= (64 << 10))
        report_against_peer_failure_perftest(case_name, "ucp_am_bw", "bandwidth_MBps", mbps, "MB/s",
                                             bytes, n, warm);
    }
    if (!options.skip_setup) {
      // Connection setup, keyed next to open, on fresh setups of this backend (same spin).
      const int n = quick ? 50 : 300;
      bool failed = false;
      auto open = make_setup(b, 64, std::chrono::microseconds(spin_us));
      auto keyed = make_setup(b, 64, std::chrono::microseconds(spin_us),
                              std::make_shared<const SwarmKey>(SwarmKey::generate().value()));
      if (open && keyed) {
        connection_setup_us(*open, 5, &failed);  // warm-up: UCX worker, first dial
        connection_setup_us(*keyed, 5, &failed);
        const double open_us = connection_setup_us(*open, n, &failed);
        const double keyed_us = connection_setup_us(*keyed, n, &failed);
        Buffer empty = Buffer::allocate_host(8);
        const int rtts = quick ? 200 : 2000;
        const double rtt_us =
            run_calls(*open, "echo", message_of(0, empty), rtts + 20, 20, 1, &failed) / rtts * 1e6;
        reporter.note(
            "{}: connection setup {:.0f} us with a swarm key, {:.0f} us without: +{:.0f} us "
            "= {:.2f} round trips of {:.0f} us",
            b.name, keyed_us, open_us, keyed_us - open_us, (keyed_us - open_us) / rtt_us, rtt_us);
        if (!failed) {
          reporter.report(
              {b.name + "/connection_setup", "setup_us", keyed_us, "us", "no_swarm_key", open_us});
        }
      }
    }
    if (rpcs > 0 && (listed.name == "tcp" || listed.name == "ucx_posix")) {
      // Resident memory over many small RPCs on one endpoint: flat after warm-up means no
      // per-message growth. 64 calls in flight, 8-byte tensors, fresh host allocations for every
      // response.
      bool failed = false;
      Message m = message_of(8, source);
      long long warm = std::max(1000LL, rpcs / 10);
      setup->response_landing = Buffer();  // responses use fresh allocations here
      run_calls(*setup, "echo", m, static_cast<int>(warm), 0, 64, &failed);
      long rss_warm = base::rss_kB();
      double s = run_calls(*setup, "echo", m, static_cast<int>(rpcs), 0, 64, &failed);
      long rss_end = base::rss_kB();
      reporter.note("{}: {} RPCs in {:.1f} s ({:.0f} calls/s)", b.name, rpcs, s,
                    static_cast<double>(rpcs) / s);
      if (!failed) {
        reporter.report({b.name + "/" + std::to_string(rpcs) + "_rpcs", "rss_kB",
                         static_cast<double>(rss_end), "kB", "rss_after_warmup",
                         static_cast<double>(rss_warm)});
      }
    }
  }
  return options.skip_device
             ? 0
             : hivemind::bench::transport_device::run_device_cases(device, reporter);
}
