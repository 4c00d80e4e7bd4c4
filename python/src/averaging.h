// The Python Averager: a TorchAverager over the caller's tensors, with its rounds run with the GIL
// released.
#pragma once

#include <pybind11/pybind11.h>

namespace hivemind::python {

void bind_averaging(pybind11::module_& m);

}  // namespace hivemind::python
