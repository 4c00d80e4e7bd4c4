// The expert server in-process: server::Server with its options as a Python object (hivemind's
// Server.create keywords are mapped onto them in hivemind_cpp/server.py).
#pragma once

#include <pybind11/pybind11.h>

namespace hivemind::python {

void bind_server(pybind11::module_& m);

}  // namespace hivemind::python
