// A transport_test_server child process for the multi-process tests.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <hivemind/harness/child_process.h>

#include "test_env.h"

namespace hivemind::transport {

// A transport_test_server child: it prints "ADDR <address>" once listening and "ALLOC ..." as a
// request's tensors are allocated, and exits when its stdin closes. Killed and reaped at the end.
class ChildServer {
 public:
  bool start(const std::string& address, const std::string& tls, bool keyed = false) {
    std::vector<std::string> argv{hivemind::testing::build_dir() + "/tests/transport_test_server",
                                  address, tls};
    if (keyed) argv.push_back("keyed");
    auto child = ChildProcess::spawn(std::move(argv));
    if (!child.is_ok()) return false;
    child_ = std::move(*child);
    return true;
  }

  // What follows `prefix` on the next stdout line that has it, or "" at the deadline.
  std::string wait_line(const std::string& prefix, std::chrono::milliseconds timeout) {
    auto line = child_.read_line_containing(prefix, Deadline::after(timeout));
    return line.is_ok() ? line->substr(line->find(prefix) + prefix.size()) : "";
  }

  void signal(int sig) { child_.signal(sig); }

 private:
  ChildProcess child_;
};

}  // namespace hivemind::transport
