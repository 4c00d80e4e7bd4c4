#include <cstring>

#include <hivemind/common/errno_text.h>

namespace hivemind {
namespace {

// strerror_r comes in two shapes: GNU's returns the text (maybe not in `buf`), POSIX's fills `buf`
// and returns 0. These overloads take whichever one this C library declares.
[[maybe_unused]] const char* strerror_result(const char* text, const char* /*buf*/) {
  return text;
}
[[maybe_unused]] const char* strerror_result(int rc, const char* buf) {
  return rc == 0 ? buf : "unknown error";
}

}  // namespace

std::string errno_text(int err) {
  char buf[256] = {};
  return strerror_result(strerror_r(err, buf, sizeof buf), buf);
}

}  // namespace hivemind
