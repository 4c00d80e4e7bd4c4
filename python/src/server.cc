#include "server.h"

#include <memory>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include <hivemind/server/server.h>

#include "dht.h"

namespace py = pybind11;

namespace hivemind::python {
namespace {

// The server and the moment it stopped: shutdown() is idempotent, and properties read after it
// keep answering (the endpoint a test wants to dial after shutdown, say).
class PyServer {
 public:
  explicit PyServer(server::ServerOptions options) {
    py::gil_scoped_release no_gil;  // builds experts and joins the DHT: may take seconds
    server_ = server::Server::create(std::move(options)).value_or_throw();
    endpoint_ = server_->address();
    dht_address_ = server_->dht_address();
  }

  void start() {
    py::gil_scoped_release no_gil;
    live().start().throw_if_error();
  }

  void shutdown(double grace_seconds) {
    if (!server_) return;
    py::gil_scoped_release no_gil;
    Status drained = server_->shutdown(
        Milliseconds(static_cast<int64_t>(std::max(grace_seconds, 0.0) * 1000.0)));
    server_.reset();  // joins every thread of the server
    drained.throw_if_error();
  }

  const std::string& endpoint() const { return endpoint_; }
  const std::string& dht_address() const { return dht_address_; }
  bool alive() const { return server_ != nullptr; }
  std::vector<std::string> expert_uids() { return live().expert_uids(); }
  std::unique_ptr<PyDht> dht() {
    auto node = live().dht();
    if (!node) return nullptr;
    return std::make_unique<PyDht>(std::move(node));
  }
  std::string metrics_text() { return live().metrics_text(); }

  py::list stats() {
    py::list out;
    for (const auto& s : live().stats()) {
      py::dict d;
      d["uid"] = s.uid;
      d["forward_batches"] = s.forward.batches;
      d["forward_samples"] = s.forward.samples;
      d["backward_batches"] = s.backward.batches;
      d["backward_samples"] = s.backward.samples;
      d["queued_tasks"] = s.forward.queued_tasks + s.backward.queued_tasks;
      out.append(d);
    }
    return out;
  }

 private:
  server::Server& live() {
    if (!server_) canceled_error("this server was shut down").throw_if_error();
    return *server_;
  }

  std::unique_ptr<server::Server> server_;
  std::string endpoint_;
  std::string dht_address_;
};

}  // namespace

void bind_server(py::module_& m) {
  using server::ServerOptions;
  py::class_<ServerOptions>(m, "_ServerOptions")
      .def(py::init<>())
      .def_readwrite("expert_cls", &ServerOptions::expert_cls)
      .def_readwrite("hidden_dim", &ServerOptions::hidden_dim)
      .def_readwrite("seq_len", &ServerOptions::seq_len)
      .def_readwrite("module_path", &ServerOptions::module_path)
      .def_readwrite("reinit", &ServerOptions::reinit)
      // As --sample_input_shape's text ("int64:16;512"): one parser checks both front ends.
      .def_property(
          "sample_inputs",
          [](const ServerOptions& o) { return server::format_sample_inputs(o.sample_inputs); },
          [](ServerOptions& o, const std::string& text) {
            o.sample_inputs = server::parse_sample_inputs(text).value_or_throw();
          })
      .def_readwrite("expert_uids", &ServerOptions::expert_uids)
      .def_readwrite("expert_pattern", &ServerOptions::expert_pattern)
      .def_readwrite("num_experts", &ServerOptions::num_experts)
      .def_readwrite("seed", &ServerOptions::seed)
      .def_readwrite("max_batch_size", &ServerOptions::max_batch_size)
      .def_readwrite("min_batch_size", &ServerOptions::min_batch_size)
      .def_readwrite("batch_timeout_ms", &ServerOptions::batch_timeout_ms)
      .def_readwrite("device", &ServerOptions::device)
      .def_readwrite("optimizer", &ServerOptions::optimizer)
      .def_readwrite("lr", &ServerOptions::lr)
      .def_readwrite("momentum", &ServerOptions::momentum)
      .def_readwrite("beta1", &ServerOptions::beta1)
      .def_readwrite("beta2", &ServerOptions::beta2)
      .def_readwrite("eps", &ServerOptions::eps)
      .def_readwrite("weight_decay", &ServerOptions::weight_decay)
      .def_readwrite("clip_grad_norm", &ServerOptions::clip_grad_norm)
      .def_readwrite("warmup_steps", &ServerOptions::warmup_steps)
      .def_readwrite("total_steps", &ServerOptions::total_steps)
      .def_readwrite("intra_op_threads", &ServerOptions::intra_op_threads)
      .def_readwrite("detect_anomalies", &ServerOptions::detect_anomalies)
      .def_readwrite("compression", &ServerOptions::compression)
      .def_readwrite("host", &ServerOptions::host)
      .def_readwrite("port", &ServerOptions::port)
      .def_readwrite("transport", &ServerOptions::transport)
      .def_readwrite("initial_peers", &ServerOptions::initial_peers)
      .def_readwrite("update_period", &ServerOptions::update_period)
      .def_readwrite("expiration", &ServerOptions::expiration)
      .def_readwrite("swarm_key_file", &ServerOptions::swarm_key_file)
      .def_readwrite("checkpoint_dir", &ServerOptions::checkpoint_dir)
      .def_readwrite("checkpoint_interval", &ServerOptions::checkpoint_interval)
      .def_readwrite("stats_report_interval", &ServerOptions::stats_report_interval)
      .def_readwrite("grace_period", &ServerOptions::grace_period)
      .def_readwrite("cpu_bind", &ServerOptions::cpu_bind)
      .def_readwrite("cpu_cores", &ServerOptions::cpu_cores)
      .def_readwrite("metrics_port", &ServerOptions::metrics_port)
      .def_readwrite("metrics_host", &ServerOptions::metrics_host)
      .def("validate", [](const ServerOptions& o) { server::validate(o).throw_if_error(); });

  py::class_<PyServer>(m, "_Server")
      .def(py::init<ServerOptions>(), py::arg("options"))
      .def("start", &PyServer::start)
      .def("shutdown", &PyServer::shutdown, py::arg("grace_period"))
      .def_property_readonly("endpoint", &PyServer::endpoint)
      .def_property_readonly("dht_address", &PyServer::dht_address)
      .def_property_readonly("alive", &PyServer::alive)
      .def("expert_uids", &PyServer::expert_uids)
      .def("dht", &PyServer::dht)
      .def("metrics_text", &PyServer::metrics_text)
      .def("stats", &PyServer::stats);
}

}  // namespace hivemind::python
