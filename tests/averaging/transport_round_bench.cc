// averaging_transport_bench: times TransportBackend rounds between N processes on this host.
//
// Not a test (no CTest case): a measuring tool for docs/benchmarks.md and for comparing against
// MPI_Allreduce. The parent forks N members before any transport exists, hands each the others'
// endpoints, then starts every round at once (a barrier through pipes) and reports the slowest
// member's time and the bus bandwidth 2(n-1)/n x bytes / time.
//
//   averaging_transport_bench [--members 4] [--mib 64] [--rounds 5] [--chunk-elements 524288]
//                             [--compress] [--listen tcp://127.0.0.1:0]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <hivemind/averaging/transport_backend.h>
#include <hivemind/transport/rpc/client.h>
#include <hivemind/transport/rpc/server.h>
#include <hivemind/transport/worker.h>

namespace {

using namespace hivemind;
using namespace hivemind::averaging;

struct Options {
  int members = 4;
  size_t mib = 64;
  int rounds = 5;
  uint64_t chunk_elements = TransportBackendOptions{}.chunk_elements;
  bool compress = false;
  std::string listen = "tcp://127.0.0.1:0";
};

bool write_line(int fd, const std::string& line) {
  std::string text = line + "\n";
  return ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

std::string read_line(int fd) {
  std::string line;
  char c = 0;
  while (::read(fd, &c, 1) == 1 && c != '\n')
    line.push_back(c);
  return line;
}

int run_member(int index, const Options& o, int from_parent, int to_parent) {
  transport::ContextOptions context_options;
  auto context = transport::Context::create(context_options).value();
  auto worker = transport::Worker::create(context, "avg" + std::to_string(index)).value();
  auto server = transport::rpc::Server::create(worker, o.listen).value();
  auto client = transport::rpc::Client::create(worker);
  TransportBackendOptions options;
  options.chunk_elements = o.chunk_elements;
  if (o.compress) options.compression = quant::Scheme::kBlockAbsmaxU8;
  auto backend = TransportBackend::create(server, client, options).value();
  write_line(to_parent, server->address());

  Group group;
  group.key = "bench";
  group.self = static_cast<size_t>(index);
  group.backend = "transport";
  for (int i = 0; i < o.members; ++i)
    group.members.push_back({read_line(from_parent), {"transport"}, ""});
  std::vector<float> values((o.mib << 20) / sizeof(float));
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<float>((i * 7 + static_cast<size_t>(index)) % 1000) / 100.0f;
  std::vector<TensorRef> tensors{{values.data(), values.size(), quant::DType::kFloat32}};

  for (int r = 0; r < o.rounds; ++r) {
    if (read_line(from_parent) != "go") break;
    group.round = static_cast<uint64_t>(r + 1);
    RoundReport report;
    const auto started = SteadyClock::now();
    Status st =
        backend->all_reduce_mean(group, tensors, Deadline::after(Milliseconds(120000)), report);
    const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
    write_line(to_parent, std::to_string(seconds) + " " + (st.is_ok() ? "ok" : st.to_string()));
  }
  // Replies this member owes may still be queued: let them leave before closing.
  server->wait_idle(Deadline::after(Milliseconds(10000)));
  backend->close();
  client->close();
  server->close();
  worker->stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--members")
      o.members = std::stoi(next());
    else if (a == "--mib")
      o.mib = std::stoul(next());
    else if (a == "--rounds")
      o.rounds = std::stoi(next());
    else if (a == "--chunk-elements")
      o.chunk_elements = std::stoull(next());
    else if (a == "--compress")
      o.compress = true;
    else if (a == "--listen")
      o.listen = next();
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  std::vector<int> to_child(o.members), from_child(o.members);
  std::vector<pid_t> pids;
  for (int i = 0; i < o.members; ++i) {
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0) return 1;
    pid_t pid = fork();
    if (pid == 0) {
      close(down[1]);
      close(up[0]);
      _exit(run_member(i, o, down[0], up[1]));
    }
    close(down[0]);
    close(up[1]);
    to_child[i] = down[1];
    from_child[i] = up[0];
    pids.push_back(pid);
  }
  std::vector<std::string> addresses;
  for (int i = 0; i < o.members; ++i)
    addresses.push_back(read_line(from_child[i]));
  for (int i = 0; i < o.members; ++i)
    for (const auto& a : addresses)
      write_line(to_child[i], a);
  const double bytes = static_cast<double>(o.mib << 20);
  for (int r = 0; r < o.rounds; ++r) {
    for (int i = 0; i < o.members; ++i)
      write_line(to_child[i], "go");
    double slowest = 0;
    std::string failure;
    for (int i = 0; i < o.members; ++i) {
      std::string line = read_line(from_child[i]);
      slowest = std::max(slowest, std::atof(line.c_str()));
      if (line.find(" ok") == std::string::npos) failure = line;
    }
    std::printf("round %d: %.3f s, bus bandwidth %.3f GB/s%s%s\n", r + 1, slowest,
                2.0 * (o.members - 1) / o.members * bytes / slowest / 1e9,
                failure.empty() ? "" : "  FAILED: ", failure.c_str());
    std::fflush(stdout);
  }
  for (int i = 0; i < o.members; ++i)
    close(to_child[i]);
  for (pid_t pid : pids)
    waitpid(pid, nullptr, 0);
  return 0;
}
