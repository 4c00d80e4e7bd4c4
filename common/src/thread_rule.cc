#include <cstdio>
#include <cstdlib>

#include <hivemind/common/thread_rule.h>

namespace hivemind {

void thread_rule_broken(const char* function, const char* rule, const char* file, int line) {
  // stderr directly, unbuffered: the process is about to abort, and the logger may be asynchronous.
  std::fprintf(stderr, "thread rule broken: %s must run %s (%s:%d)\n", function, rule, file, line);
  std::fflush(stderr);
  std::abort();
}

}  // namespace hivemind
