#include "experts.h"

#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>

#include <hivemind/client/dht_expert_directory.h>
#include <hivemind/client/remote_expert.h>
#include <hivemind/client/remote_moe.h>
#include <hivemind/client/switch_moe.h>
#include <hivemind/quant/codec.h>
#include <hivemind/runtime/experts.h>

#include "client_transport.h"
#include "dht.h"
#include "durations.h"
#include "endpoint.h"

namespace py = pybind11;

namespace hivemind::python {
namespace {

py::list schema_list(const std::vector<protocol::TensorSchema>& schemas) {
  py::list out;
  for (const auto& s : schemas) {
    py::dict d;
    d["shape"] = py::tuple(py::cast(s.shape));
    d["dtype"] = std::string(quant::dtype_name(s.dtype));
    d["compression"] = std::string(quant::scheme_name(s.compression));
    out.append(d);
  }
  return out;
}

// hivemind's RemoteExpert learns its outputs' shapes from the expert's `info`; so does this one,
// before its first forward, and its number of inputs too (the transport's caller fetches and caches
// `info` for every call anyway, so this costs no extra request).
class PyRemoteExpert {
 public:
  PyRemoteExpert(std::string uid, const std::string& endpoint, double forward_timeout,
                 double backward_timeout, bool detect_anomalies)
      : address_{std::move(uid), normalize_endpoint(endpoint)} {
    options_.forward_timeout = seconds_to_ms(forward_timeout, "forward_timeout");
    options_.backward_timeout = seconds_to_ms(backward_timeout, "backward_timeout");
    options_.detect_anomalies = detect_anomalies;
  }

  // `inputs`: the expert's inputs in the order of its forward_schema. Returns its outputs in the
  // order of its outputs_schema.
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& inputs) {
    py::gil_scoped_release no_gil;
    client::RemoteExpert remote = module();
    if (inputs.size() != num_inputs_) {
      // Python's own rule for a call with the wrong number of arguments.
      throw py::type_error("RemoteExpert '" + address_.uid + "' takes " +
                           std::to_string(num_inputs_) + " input(s) (its forward_schema), got " +
                           std::to_string(inputs.size()));
    }
    return remote->forward_outputs(inputs);
  }

  py::dict info(double timeout) {
    Result<protocol::ExpertInfo> got = [&] {
      py::gil_scoped_release no_gil;
      return ClientTransport::instance().caller()->info(
          address_, Deadline::after(seconds_to_ms(timeout, "timeout")));
    }();
    const protocol::ExpertInfo info = std::move(got).value_or_throw();
    py::dict d;
    d["uid"] = info.uid;
    d["expert_cls"] = info.expert_cls;
    d["forward_schema"] = schema_list(info.inputs);
    d["outputs_schema"] = schema_list(info.outputs);
    d["max_batch_size"] = info.max_batch_size;
    return d;
  }

  const std::string& uid() const { return address_.uid; }
  const std::string& endpoint() const { return address_.endpoint; }

 private:
  // Built once the expert's info is known; a failed fetch is retried by the next forward.
  client::RemoteExpert module() {
    std::lock_guard lock(mu_);
    if (module_) return module_;
    const protocol::ExpertInfo info =
        ClientTransport::instance()
            .caller()
            ->info(address_, Deadline::after(options_.forward_timeout))
            .value_or_throw();
    num_inputs_ = info.inputs.size();
    // The module learns the outputs' shapes from the same (cached) description.
    module_ = client::RemoteExpert(address_, ClientTransport::instance().caller(), options_);
    return module_;
  }

  client::ExpertAddress address_;
  client::RemoteExpertOptions options_;
  std::mutex mu_;
  size_t num_inputs_ = 0;  // from info, with module_
  client::RemoteExpert module_{nullptr};
};

std::shared_ptr<client::ExpertDirectory> directory_of(const PyDht& dht) {
  return std::make_shared<client::DhtExpertDirectory>(dht.node());
}

// Routing of the last forward, as Python values: per sample the chosen uids (best first), and the
// mask of which answered.
py::tuple routing_of(const client::MoERouting& routing) {
  py::list chosen;
  for (const auto& sample : routing.chosen) {
    py::list uids;
    for (const auto& c : sample)
      uids.append(c.expert.uid);
    chosen.append(uids);
  }
  return py::make_tuple(chosen, routing.mask);
}

class PyMixtureOfExperts {
 public:
  PyMixtureOfExperts(const PyDht& dht, client::RemoteMixtureOfExpertsOptions options)
      : module_(std::move(options), directory_of(dht), ClientTransport::instance().caller()) {}

  // `inputs`: the gated input first, then the experts' other inputs, flattened alike. Returns the
  // experts' outputs, each averaged alike.
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& inputs,
                                     const torch::Tensor& weight, const torch::Tensor& bias) {
    py::gil_scoped_release no_gil;
    module_->proj->weight = weight;
    module_->proj->bias = bias;
    return module_->forward_outputs(inputs);
  }
  py::tuple routing() const { return routing_of(module_->last_routing()); }

 private:
  client::RemoteMixtureOfExperts module_;
};

class PySwitchMixtureOfExperts {
 public:
  PySwitchMixtureOfExperts(const PyDht& dht, client::RemoteSwitchMixtureOfExpertsOptions options)
      : module_(std::move(options), directory_of(dht), ClientTransport::instance().caller()) {}

  // Returns {the experts' outputs, each averaged alike, the input added to the first;
  // balancing_loss}.
  std::pair<std::vector<torch::Tensor>, torch::Tensor> forward(
      const std::vector<torch::Tensor>& inputs, const torch::Tensor& weight,
      const torch::Tensor& bias, const torch::Tensor& grid_utilization, bool training) {
    py::gil_scoped_release no_gil;
    module_->proj->weight = weight;
    module_->proj->bias = bias;
    module_->grid_utilization = grid_utilization;  // updated in place in training mode
    module_->train(training);
    return module_->forward_outputs(inputs);
  }
  torch::Tensor initial_grid_utilization() const { return module_->grid_utilization.clone(); }
  py::tuple routing() const { return routing_of(module_->last_routing()); }

 private:
  client::RemoteSwitchMixtureOfExperts module_;
};

// An expert built locally from (cls, hidden_dim, uid, seed) — and, for TorchScript experts, the
// module file and reinit — exactly as a server with those options builds it: bit-identical
// weights, for checking remote results and for local baselines.
class PyLocalExpert {
 public:
  PyLocalExpert(const runtime::ExpertConfig& config, const std::string& uid, uint64_t seed)
      : module_(runtime::make_expert(config, uid, seed).value_or_throw()) {}

  // Differentiable: LibTorch's autograd records the C++ module's ops like any Python op.
  torch::Tensor forward(const torch::Tensor& input) { return forward_all({input}).at(0); }
  std::vector<torch::Tensor> forward_all(const std::vector<torch::Tensor>& inputs) {
    py::gil_scoped_release no_gil;
    return module_->forward(inputs);
  }
  std::vector<torch::Tensor> parameters() const { return module_->parameters(); }
  void to(const std::string& device) { module_->to(torch::Device(device)); }

 private:
  std::shared_ptr<runtime::ExpertModule> module_;
};

}  // namespace

void bind_experts(py::module_& m) {
  py::class_<PyLocalExpert>(m, "_LocalExpert")
      .def(py::init([](std::string cls, int64_t hidden_dim, const std::string& uid, uint64_t seed,
                       std::string module_path, bool reinit, int64_t seq_len) {
             runtime::ExpertConfig config;
             config.cls = std::move(cls);
             config.hidden_dim = hidden_dim;
             config.seq_len = seq_len;
             config.module_path = std::move(module_path);
             config.reinit = reinit;
             return std::make_unique<PyLocalExpert>(config, uid, seed);
           }),
           py::arg("expert_cls"), py::arg("hidden_dim"), py::arg("uid"), py::arg("seed"),
           py::arg("module_path") = "", py::arg("reinit") = false, py::arg("seq_len") = 128,
           py::call_guard<py::gil_scoped_release>())
      .def("forward", &PyLocalExpert::forward)
      .def("forward_all", &PyLocalExpert::forward_all)
      .def("parameters", &PyLocalExpert::parameters)
      .def("to", &PyLocalExpert::to, py::arg("device"));
  m.attr("_default_expert_seed") = runtime::kDefaultExpertSeed;
  m.def("_expert_classes", &runtime::expert_classes);
  // The checks a server makes when it loads a TorchScript expert file, with its messages.
  m.def(
      "_check_torchscript_expert",
      [](std::string path) {
        runtime::ExpertConfig config;
        config.cls = "torchscript";
        config.module_path = std::move(path);
        runtime::make_expert(config, "check", runtime::kDefaultExpertSeed)
            .status()
            .throw_if_error();
      },
      py::arg("path"), py::call_guard<py::gil_scoped_release>());

  py::class_<PyRemoteExpert>(m, "_RemoteExpert")
      .def(py::init<std::string, const std::string&, double, double, bool>(), py::arg("uid"),
           py::arg("endpoint"), py::arg("forward_timeout"), py::arg("backward_timeout"),
           py::arg("detect_anomalies"))
      .def("forward", &PyRemoteExpert::forward)
      .def("info", &PyRemoteExpert::info, py::arg("timeout"))
      .def_property_readonly("uid", &PyRemoteExpert::uid)
      .def_property_readonly("endpoint", &PyRemoteExpert::endpoint);

  // The options both MoE layers share, from the Python layer's checked keyword arguments.
  using MoEOptions = client::RemoteMixtureOfExpertsOptions;
  py::class_<MoEOptions>(m, "_MoEOptions")
      .def(py::init([](int64_t in_features, std::vector<int64_t> grid_size, std::string uid_prefix,
                       int64_t k_best, int64_t k_min, std::optional<double> forward_timeout,
                       std::optional<double> timeout_after_k_min, int64_t backward_k_min,
                       std::optional<double> backward_timeout, bool detect_anomalies,
                       bool allow_zero_outputs, std::optional<std::vector<int64_t>> output_shape) {
             MoEOptions o;
             o.in_features = in_features;
             o.grid_size = std::move(grid_size);
             o.uid_prefix = std::move(uid_prefix);
             o.k_best = k_best;
             o.k_min = k_min;
             // None: the C++ default cap (every wait has a deadline).
             if (forward_timeout)
               o.forward_timeout = seconds_to_ms(*forward_timeout, "forward_timeout");
             o.timeout_after_k_min = std::nullopt;
             if (timeout_after_k_min)
               o.timeout_after_k_min = seconds_to_ms(*timeout_after_k_min, "timeout_after_k_min");
             o.backward_k_min = backward_k_min;
             if (backward_timeout)
               o.backward_timeout = seconds_to_ms(*backward_timeout, "backward_timeout");
             o.detect_anomalies = detect_anomalies;
             o.allow_zero_outputs = allow_zero_outputs;
             o.output_shape = std::move(output_shape);
             return o;
           }),
           py::arg("in_features"), py::arg("grid_size"), py::arg("uid_prefix"), py::arg("k_best"),
           py::arg("k_min"), py::arg("forward_timeout"), py::arg("timeout_after_k_min"),
           py::arg("backward_k_min"), py::arg("backward_timeout"), py::arg("detect_anomalies"),
           py::arg("allow_zero_outputs"), py::arg("output_shape"));

  py::class_<PyMixtureOfExperts>(m, "_MixtureOfExperts")
      .def(py::init<const PyDht&, MoEOptions>(), py::arg("dht"), py::arg("options"))
      .def("forward", &PyMixtureOfExperts::forward)
      .def("routing", &PyMixtureOfExperts::routing);

  py::class_<PySwitchMixtureOfExperts>(m, "_SwitchMixtureOfExperts")
      .def(py::init([](const PyDht& dht, MoEOptions moe, double utilization_alpha,
                       double grid_dropout, double jitter_eps) {
             client::RemoteSwitchMixtureOfExpertsOptions o;
             o.moe = std::move(moe);
             o.utilization_alpha = utilization_alpha;
             o.grid_dropout = grid_dropout;
             o.jitter_eps = jitter_eps;
             return std::make_unique<PySwitchMixtureOfExperts>(dht, std::move(o));
           }),
           py::arg("dht"), py::arg("options"), py::arg("utilization_alpha"),
           py::arg("grid_dropout"), py::arg("jitter_eps"))
      .def("forward", &PySwitchMixtureOfExperts::forward)
      .def("initial_grid_utilization", &PySwitchMixtureOfExperts::initial_grid_utilization)
      .def("routing", &PySwitchMixtureOfExperts::routing);
}

}  // namespace hivemind::python
