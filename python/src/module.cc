// hivemind_cpp._C: the extension module under the hivemind_cpp package. Everything public is
// wrapped by the package's Python modules; names here start with '_'.
#include <atomic>

#include <pybind11/pybind11.h>
#include <torch/csrc/Exceptions.h>

#include <hivemind/common/logging.h>
#include <hivemind/common/version.h>
#include <hivemind/common/wait_interrupt.h>
#include <hivemind/transport/swarm_key_flag.h>

#include "averaging.h"
#include "client_transport.h"
#include "dht.h"
#include "errors.h"
#include "experts.h"
#include "server.h"

namespace py = pybind11;

namespace {

// Python's main thread (threading.main_thread().ident), the only one whose signal handlers run.
std::atomic<unsigned long> main_thread_ident{0};

// Polled by blocking waits (every kWaitInterruptPollPeriod) on whichever thread waits: on Python's
// main thread it runs Python's pending signal handlers; a KeyboardInterrupt (or any exception a
// handler raises) abandons the wait and propagates to the Python caller. It is thrown as PyTorch's
// python_error, holding the fetched Python exception: PyTorch's autograd engine re-raises that one
// as it is when the wait was inside loss.backward(), and the translator in errors.cc does the same
// for our own calls. Other threads (a server's or an averager's DHT calls, CUDA's autograd
// threads) return at once: Python runs no handler there, and taking the GIL every poll period
// would make their waits queue behind whatever Python code holds it.
void check_python_signals() {
  if (PyThread_get_thread_ident() != main_thread_ident.load(std::memory_order_relaxed)) return;
  if (!Py_IsInitialized()) return;
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() == 0) return;
  python_error error;
  error.persist();
  throw error;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "hivemind-cpp's C++ engine (use the hivemind_cpp package, not this module)";
  m.attr("__version__") = std::string(hivemind::version());
  hivemind::configure_logging_from_env().throw_if_error();  // HIVEMIND_LOG_LEVEL, as the programs

  hivemind::python::bind_errors(m);
  hivemind::python::bind_dht(m);
  hivemind::python::bind_experts(m);
  hivemind::python::bind_server(m);
  hivemind::python::bind_averaging(m);

  // The process's swarm key (docs/security.md): checked, then HIVEMIND_SWARM_KEY_FILE for every
  // transport created from now on; the client transport restarts so its next call uses it.
  m.def("_use_swarm_key_file", [](const std::string& path) {
    hivemind::transport::adopt_swarm_key_file(path).throw_if_error();
    py::gil_scoped_release no_gil;
    hivemind::python::ClientTransport::shutdown();
  });
  m.def(
      "_install_interrupt_hook",
      [](unsigned long main_thread) {
        main_thread_ident.store(main_thread, std::memory_order_relaxed);
        hivemind::set_wait_interrupt_hook(check_python_signals);
      },
      py::arg("main_thread_ident"));
  // At interpreter exit (registered with atexit by the package): no hook that takes the GIL, and no
  // transport thread of ours left running.
  m.def("_shutdown", [] {
    hivemind::set_wait_interrupt_hook({});
    py::gil_scoped_release no_gil;
    hivemind::python::ClientTransport::shutdown();
  });
}
