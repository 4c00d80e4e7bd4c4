// How C++ failures become Python exceptions. The classes live in hivemind_cpp/errors.py (so they
// can also derive from Python's own TimeoutError, ConnectionError, ...); the package hands them to
// the extension at import, and the translator below raises the one for each StatusCode with the
// C++ message.
#pragma once

#include <pybind11/pybind11.h>

namespace hivemind::python {

void bind_errors(pybind11::module_& m);

}  // namespace hivemind::python
