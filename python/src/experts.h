// Bindings of the trainer-side layers: RemoteExpert and the two MoE layers. The Python modules in
// hivemind_cpp/ own the parameters (the gating Linear, the Switch utilization buffer) and pass them
// in at each call, so optimizers, state_dict and .to() see ordinary Python tensors; the C++ layer
// does the routing, the network fan-out and the autograd functions.
#pragma once

#include <pybind11/pybind11.h>

namespace hivemind::python {

void bind_experts(pybind11::module_& m);

}  // namespace hivemind::python
