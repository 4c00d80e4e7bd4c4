// Durations as Python callers give them: float seconds, checked, then milliseconds for the C++
// layers.
#pragma once

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include <hivemind/common/clock.h>

namespace hivemind::python {

// `seconds` must be positive and finite (ValueError naming `name` otherwise); capped at a year, so
// that a deadline computed from it never overflows the steady clock.
inline Milliseconds seconds_to_ms(double seconds, const char* name) {
  if (!std::isfinite(seconds) || seconds <= 0)
    throw std::invalid_argument(std::string(name) + " must be a positive number of seconds");
  const double capped = std::min(seconds, 365.0 * 24 * 3600);
  return Milliseconds(static_cast<int64_t>(std::ceil(capped * 1000.0)));
}

}  // namespace hivemind::python
