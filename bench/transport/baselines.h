// Same-run baselines for the transport benchmark: ucx_perftest (as subprocesses, same UCX_TLS) and
// a raw blocking TCP socket stream and ping-pong written here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace hivemind::bench::transport_baselines {

// The ucx_perftest of the UCX installation this process loaded (<prefix>/bin next to the libucp in
// use), else "ucx_perftest" from PATH.
std::string ucx_perftest_program();

// ucx_perftest server + client on 127.0.0.1:port with UCX_TLS=tls (empty: the environment's).
// test: "ucp_am_lat" (returns the overall half round trip in us) or "ucp_am_bw" (overall MB/s).
// memory_types: perftest's -m (e.g. "cuda,cuda": send and receive buffers in device memory), empty
// for host memory. nullopt when perftest is missing or fails.
std::optional<double> ucx_perftest(const std::string& test, const std::string& tls, size_t bytes,
                                   int iters, int warmup, int port, std::string* why,
                                   const std::string& memory_types = "");

// Raw blocking TCP over loopback with TCP_NODELAY: ping-pong half round trip (us) and one-way
// stream (MB/s, 1 MB = 1e6 bytes as ucx_perftest).
double raw_tcp_half_rtt_us(size_t bytes, int iters);
double raw_tcp_stream_MBps(size_t bytes, int iters);

// Resident set size of this process in kB (VmRSS).
long rss_kB();

}  // namespace hivemind::bench::transport_baselines
