// The text of an errno value ("Connection refused"), safe from any thread: std::strerror may return
// a buffer shared by the whole process, so two threads reporting errors at once can garble it.
#pragma once

#include <string>

namespace hivemind {

std::string errno_text(int err);

}  // namespace hivemind
