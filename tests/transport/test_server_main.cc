// transport_test_server <listen-address> [UCX_TLS] [keyed]: an echo rpc server in its own process,
// for the fault tests (SIGKILL, SIGSTOP); "keyed" gives it the tests' swarm key (a UCX client of
// the same key then moves large payloads by same-host copy). Prints "ADDR <address>" when listening
// and "ALLOC <bytes>" when a request's tensors are being allocated (before its payload lands).
// Exits when stdin closes, so it never outlives a crashed test.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <unistd.h>

#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/staging.h>
#include <hivemind/transport/swarm_key.h>
#include <hivemind/transport/worker.h>

using namespace hivemind;
using namespace hivemind::transport;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: transport_test_server <listen-address> [UCX_TLS] [keyed]\n");
    return 2;
  }
  ContextOptions options;
  options.spin = std::chrono::microseconds(0);
  if (argc > 2 && argv[2][0] != '\0') options.ucx_config.push_back({"TLS", argv[2]});
  if (argc > 3 && std::string(argv[3]) == "keyed") {
    // The key of tests/transport/transport_test_util.h's keyed configurations.
    options.auth.swarm_key = std::make_shared<const SwarmKey>(
        SwarmKey::from_bytes(std::vector<uint8_t>(32, 0x5a)).value());
  }
  auto context = Context::create(options).value();
  auto worker = Worker::create(context).value();
  auto server = rpc::Server::create(worker, argv[1]);
  if (!server.is_ok()) {
    std::fprintf(stderr, "%s\n", server.status().to_string().c_str());
    return 1;
  }
  Allocator announce = [](const IncomingFrame& in) {
    uint64_t total = 0;
    for (auto n : in.tensor_sizes)
      total += n;
    std::printf("ALLOC %llu\n", static_cast<unsigned long long>(total));
    std::fflush(stdout);
    return host_allocator()(in);
  };
  (*server)->handle(
      "echo", [](Message m, rpc::Responder r) { r.reply(std::move(m)); }, announce);
  // The CUDA IPC test: metadata carries an IPC handle; the server maps the exporter's device
  // memory, copies it once device-to-device into its own allocation, and answers with those bytes
  // (read back to host only to return them for checking). Without CUDA it answers kUnsupported.
  (*server)->handle("ipc_copy", [](Message m, rpc::Responder r) {
    auto mapped = open_ipc(m.metadata);
    if (!mapped.is_ok()) return r.reply(mapped.status());
    auto own = allocate_device(mapped->size(), mapped->device());
    if (!own.is_ok()) return r.reply(own.status());
    Status st = copy_device_to_device(*mapped, *own);
    if (!st.is_ok()) return r.reply(st);
    auto pool = PinnedPool::create(std::max<size_t>(own->size(), 1), 2);
    if (!pool.is_ok()) return r.reply(pool.status());
    Message probe;
    probe.tensors.push_back(*own);
    auto host = stage_to_host(probe, **pool);
    if (!host.is_ok()) return r.reply(host.status());
    r.reply(std::move(host).value());
  });
  std::printf("ADDR %s\n", (*server)->address().c_str());
  std::fflush(stdout);
  char buf[64];
  while (::read(0, buf, sizeof(buf)) > 0) {
  }
  (*server)->close();
  worker->stop();
  return 0;
}
