#include "averaging.h"

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>

#include <hivemind/averaging/torch_averager.h>
#include <hivemind/quant/types.h>

#include "dht.h"
#include "durations.h"
#include "endpoint.h"

namespace py = pybind11;

namespace hivemind::python {
namespace {

py::dict report_to_dict(const averaging::RoundReport& r) {
  py::dict d;
  d["round"] = r.round;
  d["ok"] = r.ok;
  d["backend"] = r.backend;
  d["members"] = r.members;
  d["bytes_sent"] = r.bytes_sent;
  d["bytes_received"] = r.bytes_received;
  d["elapsed"] = static_cast<double>(r.elapsed.count()) / 1000.0;
  d["failure"] = r.failure;
  d["fallbacks"] = r.fallbacks;
  return d;
}

// A round started by step_async(): its result is waited for with the GIL released, in slices, so
// that Ctrl-C (the interrupt hook) can still end the wait.
class PyPendingRound {
 public:
  explicit PyPendingRound(std::future<averaging::RoundReport> future)
      : future_(std::move(future).share()) {}

  bool done() const {
    return future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }

  // None when `timeout` (seconds) passed first.
  std::optional<py::dict> result(std::optional<double> timeout) {
    // No timeout: the round's own deadline (round_timeout) bounds the wait.
    const Deadline deadline =
        timeout ? Deadline::after(seconds_to_ms(*timeout, "timeout")) : Deadline::never();
    {
      py::gil_scoped_release no_gil;
      while (future_.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
        if (deadline.expired()) break;
        py::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      }
    }
    if (!done()) return std::nullopt;
    return report_to_dict(future_.get());
  }

 private:
  std::shared_future<averaging::RoundReport> future_;
};

class PyAverager {
 public:
  PyAverager(std::vector<torch::Tensor> tensors, const std::string& key, const PyDht* dht,
             std::optional<py::dict> launcher, const std::string& listen_on, double round_timeout,
             double gather_window, double declaration_ttl, const std::string& compression) {
    averaging::AveragerOptions o;
    o.key = key;
    if (dht) {
      dht_ = dht->node();  // keeps the node alive as long as this averager
      o.dht = dht_.get();
    }
    if (launcher) {
      averaging::LauncherGroupOptions l;
      if (launcher->contains("rank")) l.rank = (*launcher)["rank"].cast<int>();
      if (launcher->contains("size")) l.size = (*launcher)["size"].cast<int>();
      if (launcher->contains("bootstrap_file"))
        l.bootstrap_file = (*launcher)["bootstrap_file"].cast<std::string>();
      o.launcher = l;
    }
    o.listen = normalize_endpoint(listen_on);
    o.round_timeout = seconds_to_ms(round_timeout, "allreduce_timeout");
    o.gather_window = seconds_to_ms(gather_window, "min_matchmaking_time");
    o.declaration_ttl = seconds_to_ms(declaration_ttl, "declaration_ttl");
    if (!compression.empty() && compression != "none") {
      auto scheme = quant::parse_scheme(compression);
      if (!scheme) {
        throw std::invalid_argument(
            "compression must be 'none' or a quant scheme such as "
            "'block_absmax_u8', got '" +
            compression + "'");
      }
      o.compression = *scheme;
    }
    py::gil_scoped_release no_gil;
    averager_ = averaging::TorchAverager::create(std::move(tensors), std::move(o)).value_or_throw();
    endpoint_ = averager_->endpoint();
  }

  py::dict step() {
    std::shared_ptr<averaging::TorchAverager> averager = live();
    averaging::RoundReport report;
    {
      py::gil_scoped_release no_gil;
      report = averager->step();
    }
    return report_to_dict(report);
  }

  std::unique_ptr<PyPendingRound> step_async() {
    return std::make_unique<PyPendingRound>(live()->step_async());
  }

  void shutdown() {
    if (!averager_) return;
    py::gil_scoped_release no_gil;
    averager_->close();
    averager_.reset();
    dht_.reset();
  }

  const std::string& endpoint() const { return endpoint_; }
  bool alive() const { return averager_ != nullptr; }

 private:
  std::shared_ptr<averaging::TorchAverager> live() const {
    if (!averager_) canceled_error("this averager was shut down").throw_if_error();
    return averager_;
  }

  std::shared_ptr<dht::Dht> dht_;
  std::shared_ptr<averaging::TorchAverager> averager_;
  std::string endpoint_;
};

}  // namespace

void bind_averaging(py::module_& m) {
  py::class_<PyPendingRound>(m, "_PendingRound")
      .def("done", &PyPendingRound::done)
      .def("result", &PyPendingRound::result, py::arg("timeout") = py::none());
  py::class_<PyAverager>(m, "_Averager")
      .def(py::init<std::vector<torch::Tensor>, const std::string&, const PyDht*,
                    std::optional<py::dict>, const std::string&, double, double, double,
                    const std::string&>(),
           py::arg("tensors"), py::arg("key"), py::arg("dht"), py::arg("launcher"),
           py::arg("listen_on"), py::arg("round_timeout"), py::arg("gather_window"),
           py::arg("declaration_ttl"), py::arg("compression"))
      .def("step", &PyAverager::step)
      .def("step_async", &PyAverager::step_async)
      .def("shutdown", &PyAverager::shutdown)
      .def_property_readonly("endpoint", &PyAverager::endpoint)
      .def_property_readonly("alive", &PyAverager::alive);
}

}  // namespace hivemind::python
