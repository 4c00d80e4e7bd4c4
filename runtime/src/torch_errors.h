// LibTorch reports failures by throwing; the runtime reports them as Status.
#pragma once

#include <exception>
#include <string>

#include <c10/util/Exception.h>
#include <fmt/format.h>

#include <hivemind/common/status.h>

namespace hivemind::runtime::detail {

// Runs `body`, turning LibTorch's (and the standard library's) exceptions into an internal error
// that names `what`, so a bad batch or a bad checkpoint never escapes into a worker thread.
template <typename F>
auto guarded(const std::string& what, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const c10::Error& e) {
    return internal_error(fmt::format("{}: {}", what, e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return internal_error(fmt::format("{}: {}", what, e.what()));
  }
}

}  // namespace hivemind::runtime::detail
