// transport_test_server <listen-address> [UCX_TLS]: an echo rpc server in its own process, for the
// fault tests (SIGKILL, SIGSTOP). Prints "ADDR <address>" when listening and "ALLOC <bytes>" when a
// request's tensors are being allocated (before its payload lands). Exits when stdin closes, so it
// never outlives a crashed test.
#include <unistd.h>

#include <cstdio>
#include <string>

#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/worker.h>

using namespace hivemind;
using namespace hivemind::transport;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: transport_test_server <listen-address> [UCX_TLS]\n");
    return 2;
  }
  ContextOptions options;
  options.spin = std::chrono::microseconds(0);
  if (argc > 2) options.ucx_config.push_back({"TLS", argv[2]});
  auto context = Context::create(options).value();
  auto worker = Worker::create(context).value();
  auto server = rpc::Server::create(worker, argv[1]);
  if (!server.is_ok()) {
    std::fprintf(stderr, "%s\n", server.status().to_string().c_str());
    return 1;
  }
  Allocator announce = [](const IncomingFrame& in) {
    uint64_t total = 0;
    for (auto n : in.tensor_sizes) total += n;
    std::printf("ALLOC %llu\n", static_cast<unsigned long long>(total));
    std::fflush(stdout);
    return host_allocator()(in);
  };
  (*server)->handle("echo", [](Message m, rpc::Responder r) { r.reply(std::move(m)); }, announce);
  std::printf("ADDR %s\n", (*server)->address().c_str());
  std::fflush(stdout);
  char buf[64];
  while (::read(0, buf, sizeof(buf)) > 0) {
  }
  (*server)->close();
  worker->stop();
  return 0;
}
