// Shared helpers of the transport tests: backends to parametrize over, patterns, waiting with
// deadlines.
#pragma once

#include <chrono>
#include <cstring>
#include <future>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <hivemind/transport/context.h>
#include <hivemind/transport/message.h>
#include <hivemind/transport/swarm_key.h>

namespace hivemind::transport::testing {

struct BackendParam {
  std::string name;    // gtest suffix
  std::string scheme;  // "tcp" or "ucx"
  std::vector<std::pair<std::string, std::string>> ucx_config;
  bool keyed = false;  // every context gets test_swarm_key(): each connection runs the handshake
};

// The key of the keyed configurations.
inline std::shared_ptr<const SwarmKey> test_swarm_key() {
  static const auto key = std::make_shared<const SwarmKey>(
      SwarmKey::from_bytes(std::vector<uint8_t>(32, 0x5a)).value());
  return key;
}

// tcp; UCX over its tcp transport; UCX over shared memory (posix or sysv for small messages, cma
// for rendezvous; tcp stays listed because UCX 1.13's sockaddr connection setup needs it).
inline std::vector<BackendParam> all_backends() {
  std::vector<BackendParam> v{{"tcp", "tcp", {}}};
#ifdef HIVEMIND_TRANSPORT_HAVE_UCX
  v.push_back({"ucx_tcp", "ucx", {{"TLS", "tcp"}}});
  v.push_back({"ucx_posix", "ucx", {{"TLS", "posix,cma,tcp"}}});
  v.push_back({"ucx_sysv", "ucx", {{"TLS", "sysv,cma,tcp"}}});
#endif
  return v;
}

// tcp and UCX-over-tcp again, with a swarm key: the suites that run over these show that members
// see the transport behave exactly as without one.
inline std::vector<BackendParam> keyed_backends() {
  std::vector<BackendParam> v{{"tcp_keyed", "tcp", {}, true}};
#ifdef HIVEMIND_TRANSPORT_HAVE_UCX
  v.push_back({"ucx_tcp_keyed", "ucx", {{"TLS", "tcp"}}, true});
#endif
  return v;
}

inline void PrintTo(const BackendParam& p, std::ostream* os) {
  *os << p.name;
}

inline std::string param_name(const ::testing::TestParamInfo<BackendParam>& info) {
  return info.param.name;
}

inline Buffer pattern_buffer(size_t n, uint32_t seed) {
  Buffer b = Buffer::allocate_host(n);
  auto* p = static_cast<uint8_t*>(b.data());
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    p[i] = static_cast<uint8_t>(x >> 24);
  }
  return b;
}

inline bool same_bytes(const Buffer& a, const Buffer& b) {
  return a.size() == b.size() && (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

template <typename T>
T wait_for(std::future<T>& f, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  if (f.wait_for(timeout) != std::future_status::ready) {
    ADD_FAILURE() << "timed out waiting for a future";
    throw std::runtime_error("future timeout");
  }
  return f.get();
}

}  // namespace hivemind::transport::testing
