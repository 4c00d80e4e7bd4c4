// hivemind-bench transport's device-tensor cases (device_cases.h): the sender here, the receiver in
// a peer process, because CUDA IPC only opens another process's memory and because the transport
// cases must cross a process boundary to be what a server sees.
#include "transport/device_cases.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hivemind/common/byte_order.h>
#include <hivemind/transport/context.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/staging.h>
#include <hivemind/transport/worker.h>

#include "transport/baselines.h"
#include "transport/device_baselines.h"

extern char** environ;

namespace hivemind::bench::transport_device {
namespace {

using namespace hivemind::transport;
namespace raw = hivemind::bench::device_baselines;

// The staged and IPC requests travel over host memory: shared memory where UCX is here (its own
// transports, never its CUDA ones, so that the staging is ours), else TCP.
constexpr const char* kHostTls = "posix,cma,tcp";
constexpr auto kCallTimeout = std::chrono::seconds(60);
constexpr auto kPeerStartTimeout = std::chrono::seconds(60);
constexpr auto kPeerExitTimeout = std::chrono::seconds(10);

std::shared_ptr<Context> host_context() {
  ContextOptions o;
  o.ucx_config = {{"TLS", kHostTls}};
  auto ctx = Context::create(o);
  return ctx.is_ok() ? *ctx : nullptr;
}

std::shared_ptr<Context> device_context() {
  auto ctx = Context::create(ContextOptions{});  // UCX's own choice of transports, CUDA's included
  return ctx.is_ok() ? *ctx : nullptr;
}

// Why the direct case cannot run with `ctx`, or empty when it can.
std::string direct_unavailable(const std::shared_ptr<Context>& ctx) {
  if (!ctx) return "no transport context";
  if (!ctx->ucx_available()) return "UCX unavailable (" + ctx->ucx_unavailable_reason() + ")";
  if (!ctx->ucx_supports_memory_type(MemoryType::kCuda))
    return "UCX " + Context::ucx_version() + " here cannot move CUDA memory (built without CUDA)";
  return "";
}

// Requests name their size in their first 8 bytes of metadata; what follows is case-specific.
std::vector<uint8_t> size_prefix(uint64_t bytes) {
  std::vector<uint8_t> out(8);
  store_le<uint64_t>(out.data(), bytes);
  return out;
}

// ---- the peer (receiver) ----

// Runs blocking CUDA copies off the I/O thread (staging.h: never on it), in order.
class CopyThread {
 public:
  CopyThread() : thread_([this] { loop(); }) {}
  ~CopyThread() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    ready_.notify_one();
    thread_.join();
  }
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(fn));
    }
    ready_.notify_one();
  }

 private:
  void loop() {
    std::unique_lock lock(mu_);
    while (true) {
      ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

// A Responder rides in a shared_ptr so that the job holding it is copyable (std::function).
using SharedResponder = std::shared_ptr<rpc::Responder>;

void reply_status(const SharedResponder& responder, const Status& status) {
  responder->reply(status.is_ok() ? Result<Message>(Message{}) : Result<Message>(status));
}

Result<uint64_t> requested_size(const Message& m, const Buffer& landing) {
  if (m.metadata.size() < 8) return invalid_argument_error("request without its size");
  const uint64_t n = load_le<uint64_t>(m.metadata.data());
  if (n == 0 || n > landing.size())
    return invalid_argument_error("request size " + std::to_string(n) + " out of range");
  return n;
}

}  // namespace

int run_device_peer(const DeviceCaseOptions& options) {
  if (options.sizes.empty()) return 2;
  const size_t max_bytes = *std::max_element(options.sizes.begin(), options.sizes.end());
  auto landing = allocate_device(max_bytes, 0);
  if (!landing.is_ok()) {
    std::fprintf(stderr, "device peer: %s\n", landing.status().to_string().c_str());
    return 1;
  }
  const Buffer device_landing = *landing;
  auto pinned = PinnedPool::create(max_bytes, 2);  // window 1: one slot landing, one being copied
  if (!pinned.is_ok()) {
    std::fprintf(stderr, "device peer: %s\n", pinned.status().to_string().c_str());
    return 1;
  }
  auto copier = std::make_shared<CopyThread>();

  auto host_ctx = host_context();
  auto device_ctx = device_context();
  if (!host_ctx || !device_ctx) return 1;
  auto host_worker = Worker::create(host_ctx, "device-peer-host").value();
  auto device_worker = Worker::create(device_ctx, "device-peer-dev").value();
  const std::string host_scheme = host_ctx->ucx_available() ? "ucx" : "tcp";
  auto host_server = rpc::Server::create(host_worker, host_scheme + "://127.0.0.1:0");
  if (!host_server.is_ok()) {
    std::fprintf(stderr, "device peer: %s\n", host_server.status().to_string().c_str());
    return 1;
  }

  // staged: lands in a pinned slot, then one host -> device copy.
  (*host_server)
      ->handle(
          "staged",
          [copier, device_landing](Message m, rpc::Responder r) {
            auto responder = std::make_shared<rpc::Responder>(std::move(r));
            copier->post([m = std::move(m), responder, device_landing] {
              if (m.tensors.size() != 1) {
                reply_status(responder, invalid_argument_error("one tensor expected"));
                return;
              }
              const Buffer& host = m.tensors[0];
              reply_status(responder, copy_to_device(host, device_landing.slice(0, host.size())));
            });
          },
          [pool = *pinned](const IncomingFrame& in) -> Result<std::vector<Buffer>> {
            std::vector<Buffer> out;
            for (uint64_t n : in.tensor_sizes) {
              HIVEMIND_ASSIGN_OR_RETURN(Buffer slot, pool->acquire(n));
              out.push_back(std::move(slot));
            }
            return out;
          });

  // ipc: the sender's handle, opened once per allocation (a receiver keeps its mappings: opening
  // costs far more than a copy), then one device -> device copy.
  auto mappings = std::make_shared<std::map<std::string, Buffer>>();  // copy thread only
  (*host_server)->handle("ipc", [copier, device_landing, mappings](Message m, rpc::Responder r) {
    auto responder = std::make_shared<rpc::Responder>(std::move(r));
    copier->post([m = std::move(m), responder, device_landing, mappings] {
      auto n = requested_size(m, device_landing);
      if (!n.is_ok()) {
        reply_status(responder, n.status());
        return;
      }
      const std::span<const uint8_t> handle = std::span(m.metadata).subspan(8);
      const std::string key(handle.begin(), handle.end());
      auto it = mappings->find(key);
      if (it == mappings->end()) {
        auto opened = open_ipc(handle);
        if (!opened.is_ok()) {
          reply_status(responder, opened.status());
          return;
        }
        it = mappings->emplace(key, *opened).first;
      }
      if (it->second.size() < *n) {
        reply_status(responder, invalid_argument_error("the shared allocation is too small"));
        return;
      }
      reply_status(responder,
                   copy_device_to_device(it->second.slice(0, *n), device_landing.slice(0, *n)));
    });
  });

  // ipc_raw: the baseline, in this process so that the copy crosses processes as ours does.
  // Metadata: size, repetitions, the raw cudaIpcMemHandle_t. Replies with the median us as text.
  (*host_server)->handle("ipc_raw", [copier, device_landing](Message m, rpc::Responder r) {
    auto responder = std::make_shared<rpc::Responder>(std::move(r));
    copier->post([m = std::move(m), responder, device_landing] {
      auto n = requested_size(m, device_landing);
      if (!n.is_ok() || m.metadata.size() < 12) {
        reply_status(responder, invalid_argument_error("ipc_raw: size, repetitions, handle"));
        return;
      }
      const int reps = static_cast<int>(load_le<uint32_t>(m.metadata.data() + 8));
      std::string why;
      auto us = raw::raw_ipc_copy_us(std::span(m.metadata).subspan(12), device_landing.data(), *n,
                                     reps, &why);
      if (!us) {
        reply_status(responder, unavailable_error("raw CUDA IPC copy: " + why));
        return;
      }
      Message out;
      const std::string text = std::to_string(*us);
      out.metadata.assign(text.begin(), text.end());
      responder->reply(std::move(out));
    });
  });

  // direct: lands in device memory through UCX itself; nothing left to do when it arrives.
  std::string direct_address = "-";
  std::shared_ptr<rpc::Server> device_server;
  if (direct_unavailable(device_ctx).empty()) {
    auto created = rpc::Server::create(device_worker, "ucx://127.0.0.1:0");
    if (created.is_ok()) {
      device_server = *created;
      device_server->handle(
          "direct", [](Message, rpc::Responder r) { r.reply(Message{}); },
          [device_landing](const IncomingFrame& in) -> Result<std::vector<Buffer>> {
            std::vector<Buffer> out;
            for (uint64_t n : in.tensor_sizes) {
              if (n > device_landing.size()) return too_large_error("larger than the landing");
              out.push_back(device_landing.slice(0, n));
            }
            return out;
          });
      direct_address = device_server->address();
    }
  }

  std::printf("hivemind-device-peer %s %s\n", (*host_server)->address().c_str(),
              direct_address.c_str());
  std::fflush(stdout);
  // Serve until the sender closes our stdin (or dies, which closes it too).
  char byte;
  while (::read(STDIN_FILENO, &byte, 1) > 0) {
  }
  if (device_server) device_server->close();
  (*host_server)->close();
  copier.reset();  // finishes the copies in flight; their replies go nowhere now
  device_worker->stop();
  host_worker->stop();
  return 0;
}

namespace {

// ---- the sender ----

// The peer process: this program re-executed with --device-peer, its stdin and stdout piped here.
class Peer {
 public:
  ~Peer() { stop(); }

  // Starts the peer and reads its addresses (within kPeerStartTimeout).
  Status start(const std::vector<size_t>& sizes) {
    std::string mib;
    for (size_t s : sizes)
      mib += (mib.empty() ? "" : ",") + std::to_string(s >> 20);
    std::vector<std::string> args{"/proc/self/exe", "transport", "--device-peer",
                                  "--device-sizes-mib", mib};
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0)
      return errno_error("pipe2", errno);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    if (rc != 0) {
      pid_ = -1;
      return errno_error("posix_spawn of the device peer", rc);
    }
    // Its line "hivemind-device-peer <host address> <direct address or ->" (after whatever else
    // the program prints first).
    const std::string tag = "hivemind-device-peer ";
    const auto deadline = std::chrono::steady_clock::now() + kPeerStartTimeout;
    std::string line;
    while (line.compare(0, tag.size(), tag) != 0 || line.back() != '\n') {
      if (!line.empty() && line.back() == '\n') line.clear();  // another line: not ours
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{stdout_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        return timeout_error("the device peer did not start within 60 s");
      char c;
      if (::read(stdout_, &c, 1) != 1) return unavailable_error("the device peer exited at start");
      line += c;
    }
    std::istringstream words(line.substr(tag.size()));
    words >> host_address_ >> direct_address_;
    if (host_address_.empty() || direct_address_.empty())
      return protocol_error("unexpected line from the device peer: " + line);
    return Status::ok();
  }

  void stop() {
    if (stdin_ >= 0) ::close(stdin_);  // the peer's signal to exit
    if (stdout_ >= 0) ::close(stdout_);
    stdin_ = stdout_ = -1;
    if (pid_ <= 0) return;
    const auto deadline = std::chrono::steady_clock::now() + kPeerExitTimeout;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling a process's exit
    }
    pid_ = -1;
  }

  const std::string& host_address() const { return host_address_; }
  // Empty when the peer cannot receive device memory through UCX.
  std::string direct_address() const { return direct_address_ == "-" ? "" : direct_address_; }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1, stdout_ = -1;
  std::string host_address_, direct_address_;
};

// Median microseconds of `reps` calls made by `one` (after 2 warm-ups); nullopt with `why` set on
// the first failure.
std::optional<double> median_call_us(int reps, const std::function<Status()>& one,
                                     std::string* why) {
  std::vector<double> times;
  for (int i = 0; i < reps + 2; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const Status st = one();
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    if (!st.is_ok()) {
      *why = st.to_string();
      return std::nullopt;
    }
    if (i >= 2) times.push_back(us);
  }
  return median(times);
}

double mbps(size_t bytes, double us) {
  return static_cast<double>(bytes) / us;  // bytes per us = MB/s (1 MB = 1e6 B)
}

Status call_status(rpc::Client& client, const std::string& address, const std::string& method,
                   Message request) {
  auto reply = client.call(address, method, std::move(request), Deadline::after(kCallTimeout));
  return reply.get().status();
}

}  // namespace

int run_device_cases(const DeviceCaseOptions& options, Reporter& reporter) {
  if (!cuda_available()) {
    auto probe = allocate_device(1, 0);
    reporter.note("transport device cases: skipped: {}", probe.is_ok()
                                                             ? std::string("no CUDA device visible")
                                                             : probe.status().to_string());
    return 0;
  }
  if (options.sizes.empty()) return 0;
  const size_t max_bytes = *std::max_element(options.sizes.begin(), options.sizes.end());
  auto source = allocate_device(max_bytes, 0);
  auto raw_source = allocate_device(max_bytes, 0);  // its own allocation: IPC opens whole ones
  if (!source.is_ok() || !raw_source.is_ok()) {
    reporter.note("transport device cases: skipped: {}",
                  (source.is_ok() ? raw_source.status() : source.status()).to_string());
    return 0;
  }
  Peer peer;
  if (Status st = peer.start(options.sizes); !st.is_ok()) {
    reporter.note("transport device cases: skipped: {}", st.to_string());
    return 1;
  }
  auto host_ctx = host_context();
  auto device_ctx = device_context();
  if (!host_ctx || !device_ctx) {
    reporter.note("transport device cases: skipped: no transport context");
    return 1;
  }
  auto host_worker = Worker::create(host_ctx, "device-bench-host").value();
  auto device_worker = Worker::create(device_ctx, "device-bench-dev").value();
  auto host_client = rpc::Client::create(host_worker);
  auto device_client = rpc::Client::create(device_worker);
  // The pool the rpc client itself stages through (4 MiB slots, 16 of them).
  auto staging_pool = PinnedPool::create(4 << 20, 16);
  std::string direct_why = direct_unavailable(device_ctx);
  if (direct_why.empty() && peer.direct_address().empty())
    direct_why = "the peer could not listen for device memory";
  reporter.note(
      "transport device cases: peer {} (staged, ipc){}; median of {} sends after 2 warm-ups, one "
      "at a time",
      peer.host_address(), peer.direct_address().empty() ? "" : ", " + peer.direct_address(),
      options.reps);
  auto ipc_handle = export_ipc(*source);
  std::string why;
  auto raw_handle = raw::raw_ipc_handle(raw_source->data(), &why);
  int port = 20900;
  for (size_t bytes : options.sizes) {
    const std::string label = size_label(bytes);
    const Buffer tensor = source->slice(0, bytes);

    // staged: what the rpc client does with a device tensor on a host-only wire, and what the
    // receiver does to get it back on its device.
    if (!staging_pool.is_ok()) {
      reporter.note("device_staged/{}: skipped: {}", label, staging_pool.status().to_string());
    } else {
      auto us = median_call_us(
          options.reps,
          [&]() -> Status {
            Message m;
            m.tensors.push_back(tensor);
            HIVEMIND_ASSIGN_OR_RETURN(Message staged, stage_to_host(m, **staging_pool));
            return call_status(*host_client, peer.host_address(), "staged", std::move(staged));
          },
          &why);
      auto base = raw::pinned_round_trip_us(bytes, options.reps, &why);
      if (!us || !base) {
        reporter.note("device_staged/{}: skipped: {}", label, why);
      } else {
        reporter.report({"device_staged/" + label, "bandwidth_MBps", mbps(bytes, *us), "MB/s",
                         "cudaMemcpy_D2H+H2D_pinned", mbps(bytes, *base)});
      }
    }

    // direct: the device Buffer as it is, through a CUDA-aware UCX.
    if (!direct_why.empty()) {
      reporter.note("device_direct/{}: skipped: {}", label, direct_why);
    } else {
      auto us = median_call_us(
          options.reps,
          [&]() -> Status {
            Message m;
            m.tensors.push_back(tensor);
            return call_status(*device_client, peer.direct_address(), "direct", std::move(m));
          },
          &why);
      auto base = transport_baselines::ucx_perftest("ucp_am_bw", "", bytes, options.reps, 2, port++,
                                                    &why, {{"-m", "cuda,cuda"}, {}});
      if (!us || !base) {
        reporter.note("device_direct/{}: skipped: {}", label, why);
      } else {
        reporter.report({"device_direct/" + label, "bandwidth_MBps", mbps(bytes, *us), "MB/s",
                         "ucx_perftest_am_bw_cuda", *base});
      }
    }

    // ipc: the handle in the metadata, one device -> device copy in the receiver.
    if (!ipc_handle.is_ok() || !raw_handle) {
      reporter.note("device_ipc/{}: skipped: {}", label,
                    ipc_handle.is_ok() ? why : ipc_handle.status().to_string());
      continue;
    }
    auto us = median_call_us(
        options.reps,
        [&]() -> Status {
          Message m;
          m.metadata = size_prefix(bytes);
          m.metadata.insert(m.metadata.end(), ipc_handle->begin(), ipc_handle->end());
          return call_status(*host_client, peer.host_address(), "ipc", std::move(m));
        },
        &why);
    Message raw_request;
    raw_request.metadata = size_prefix(bytes);
    raw_request.metadata.resize(12);
    store_le<uint32_t>(raw_request.metadata.data() + 8, static_cast<uint32_t>(options.reps));
    raw_request.metadata.insert(raw_request.metadata.end(), raw_handle->begin(), raw_handle->end());
    auto raw_reply = host_client
                         ->call(peer.host_address(), "ipc_raw", std::move(raw_request),
                                Deadline::after(kCallTimeout))
                         .get();
    std::optional<double> base;
    if (raw_reply.is_ok()) {
      base = std::strtod(
          std::string(raw_reply->metadata.begin(), raw_reply->metadata.end()).c_str(), nullptr);
    } else {
      why = raw_reply.status().to_string();
    }
    if (!us || !base) {
      reporter.note("device_ipc/{}: skipped: {}", label, why);
    } else {
      reporter.report({"device_ipc/" + label, "bandwidth_MBps", mbps(bytes, *us), "MB/s",
                       "raw_cuda_ipc_copy", mbps(bytes, *base)});
    }
  }
  host_client->close();
  device_client->close();
  peer.stop();
  host_worker->stop();
  device_worker->stop();
  return 0;
}

}  // namespace hivemind::bench::transport_device
