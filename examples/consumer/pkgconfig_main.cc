// The same check through pkg-config instead of CMake.
#include <cstdio>

#include <hivemind/common/status.h>

int main() {
  hivemind::Status status = hivemind::not_found_error("nothing");
  if (status.code() != hivemind::StatusCode::kNotFound) return 1;
  std::printf("consumer: linked through pkg-config (%s)\n", status.to_string().c_str());
  return 0;
}
