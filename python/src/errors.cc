#include "errors.h"

#include <exception>
#include <mutex>
#include <string>

#include <torch/csrc/Exceptions.h>

#include <hivemind/common/status.h>

namespace py = pybind11;

namespace hivemind::python {
namespace {

// StatusCode name -> Python class, set once at import by hivemind_cpp/errors.py. Kept as owned
// references for the life of the interpreter (the classes are module globals anyway).
py::dict& error_classes() {
  static auto* classes = new py::dict();  // leaked on purpose: no teardown-order hazard at exit
  return *classes;
}

void raise_status(const StatusError& e) {
  const std::string name(status_code_name(e.code()));
  py::dict& classes = error_classes();
  if (classes.contains(name.c_str())) {
    py::object cls = classes[name.c_str()];
    PyErr_SetString(cls.ptr(), e.what());
  } else if (classes.contains("HivemindError")) {
    py::object cls = classes["HivemindError"];
    PyErr_SetString(cls.ptr(), e.what());
  } else {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
}

}  // namespace

void bind_errors(py::module_& m) {
  m.def(
      "_set_error_classes", [](py::dict classes) { error_classes() = std::move(classes); },
      "Called once by hivemind_cpp.errors: StatusCode name -> exception class.");
  // std::invalid_argument and std::runtime_error keep pybind11's mapping (ValueError,
  // RuntimeError); a StatusError says which kind of failure it was.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      raise_status(e);
    } catch (python_error& e) {
      e.restore();  // a Python exception carried through C++ (Ctrl-C during a wait): as it was
    }
  });
  py::list codes;
  for (int c = 0; c <= static_cast<int>(StatusCode::kIoError); ++c)
    codes.append(std::string(status_code_name(static_cast<StatusCode>(c))));
  m.attr("_status_codes") = codes;
}

}  // namespace hivemind::python
