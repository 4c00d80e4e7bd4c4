// Same-run baselines for the transport benchmark: ucx_perftest (as subprocesses, same UCX_TLS) and
// a raw blocking TCP socket stream and ping-pong written here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hivemind::bench::transport_baselines {

// The ucx_perftest of the UCX installation this process loaded (<prefix>/bin next to the libucp in
// use), else "ucx_perftest" from PATH.
std::string ucx_perftest_program();

// What a perftest run adds to the plain one: client arguments (e.g. {"-m", "cuda,cuda"}: buffers
// in device memory; {"-e"}: endpoints with peer-failure handling, as ours) and environment entries
// for both sides (e.g. "UCX_MM_ERROR_HANDLING=y", which our Context sets on UCX >= 1.14).
struct PerftestVariant {
  std::vector<std::string> args;
  std::vector<std::string> env;
};

// ucx_perftest server + client on 127.0.0.1:port with UCX_TLS=tls (empty: the environment's).
// test: "ucp_am_lat" (returns the overall half round trip in us) or "ucp_am_bw" (overall MB/s).
// nullopt when perftest is missing or fails.
std::optional<double> ucx_perftest(const std::string& test, const std::string& tls, size_t bytes,
                                   int iters, int warmup, int port, std::string* why,
                                   const PerftestVariant& variant = {});

// Raw blocking TCP over loopback with TCP_NODELAY: ping-pong half round trip (us) and one-way
// stream (MB/s, 1 MB = 1e6 bytes as ucx_perftest).
double raw_tcp_half_rtt_us(size_t bytes, int iters);
double raw_tcp_stream_MBps(size_t bytes, int iters);

// Resident set size of this process in kB (VmRSS).
long rss_kB();

}  // namespace hivemind::bench::transport_baselines
