// The project's version: the one the top-level CMakeLists.txt's project() declares, compiled into
// hivemind_common from a source CMake generates (common/src/version.cc.in), so there is one place
// to change it and a program reports the version of the library it runs with.
#pragma once

#include <string>
#include <string_view>

namespace hivemind {

// "0.1.0"
std::string_view version();

// "<program> <version>", e.g. "hivemind-server 0.1.0": what every program prints for --version.
std::string version_line(std::string_view program);

}  // namespace hivemind
