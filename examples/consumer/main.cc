// Proves that an installed hivemind is usable from an outside CMake project.
#include <cstdio>
#include <string>

#include <hivemind/common/clock.h>
#include <hivemind/common/logging.h>
#include <hivemind/common/result.h>
#include <hivemind/common/version.h>

int main() {
  if (hivemind::Status logging = hivemind::configure_logging_from_env(); !logging.is_ok()) {
    std::fprintf(stderr, "consumer: %s\n", logging.to_string().c_str());
    return 2;
  }
  hivemind::Result<int> answer = 42;
  hivemind::Deadline deadline = hivemind::Deadline::after(hivemind::Milliseconds(1000));
  if (!answer.is_ok() || deadline.expired()) return 1;
  const std::string linked = hivemind::version_line("hivemind::common");
  std::printf("consumer: linked %s from the installed package (answer %d)\n", linked.c_str(),
              *answer);
  return 0;
}
