#include "dht.h"

#include <chrono>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include <hivemind/dht/expert_registry.h>

#include "durations.h"
#include "endpoint.h"

namespace py = pybind11;

namespace hivemind::python {
namespace {

Deadline deadline_in(double seconds) {
  return Deadline::after(seconds_to_ms(seconds, "timeout"));
}

// Python DHT time is hivemind's: float seconds since the Unix epoch; the C++ DHT keeps integer
// milliseconds.
DhtTime to_dht_time(double seconds) {
  if (!std::isfinite(seconds) || seconds <= 0)
    throw std::invalid_argument("expiration_time must be a positive Unix time in seconds");
  return static_cast<DhtTime>(std::llround(seconds * 1000.0));
}

std::unique_ptr<PyDht> start(std::vector<std::string> initial_peers, const std::string& listen_on,
                             bool client_mode, double bootstrap_timeout,
                             const std::string& bootstrap_file) {
  dht::DhtOptions o;
  o.listen = listen_on;
  for (auto& peer : initial_peers)
    o.initial_peers.push_back(normalize_endpoint(peer));
  o.node.client_mode = client_mode;
  o.bootstrap_timeout = seconds_to_ms(bootstrap_timeout, "bootstrap_timeout");
  o.bootstrap_file = bootstrap_file;
  Result<std::unique_ptr<dht::Dht>> node = [&] {
    py::gil_scoped_release no_gil;
    return dht::Dht::start(o);
  }();
  return std::make_unique<PyDht>(std::shared_ptr<dht::Dht>(std::move(node).value_or_throw()));
}

}  // namespace

const std::shared_ptr<dht::Dht>& PyDht::node() const {
  if (!node_) canceled_error("this DHT was shut down").throw_if_error();
  return node_;
}

void bind_dht(py::module_& m) {
  m.attr("_max_dht_key_bytes") = dht::kMaxKeyBytes;
  py::class_<PyDht>(m, "_DHT")
      .def(py::init(&start), py::arg("initial_peers"), py::arg("listen_on"), py::arg("client_mode"),
           py::arg("bootstrap_timeout"), py::arg("bootstrap_file"))
      .def_property_readonly("address", [](const PyDht& d) { return d.node()->address(); })
      .def_property_readonly("node_id", [](const PyDht& d) { return d.node()->node_id().hex(); })
      .def_property_readonly("alive", &PyDht::alive)
      .def("dht_time", [](const PyDht& d) { return d.node()->dht_now() / 1000.0; })
      .def("peers",
           [](const PyDht& d) {
             std::vector<std::string> out;
             for (const auto& c : d.node()->peers())
               out.push_back(c.address);
             return out;
           })
      .def(
          "declare_experts",
          [](const PyDht& d, const std::vector<std::string>& uids, const std::string& endpoint,
             double expiration_time, double timeout) {
            const std::string normalized = normalize_endpoint(endpoint);
            const auto& node = d.node();
            // hivemind lets any peer declare any endpoint: this process vouches for it.
            node->add_own_endpoint(normalized);
            py::gil_scoped_release no_gil;
            dht::declare_experts(*node, uids, normalized, to_dht_time(expiration_time),
                                 deadline_in(timeout))
                .throw_if_error();
          },
          py::arg("uids"), py::arg("endpoint"), py::arg("expiration_time"), py::arg("timeout"))
      .def(
          "get_experts",
          [](const PyDht& d, const std::vector<std::string>& uids, double timeout) {
            const auto& node = d.node();
            Result<std::vector<std::optional<dht::ExpertAddress>>> found = [&] {
              py::gil_scoped_release no_gil;
              return dht::get_experts(*node, uids, deadline_in(timeout));
            }();
            std::vector<std::optional<std::pair<std::string, std::string>>> out;
            for (const auto& e : std::move(found).value_or_throw()) {
              if (e)
                out.emplace_back(std::make_pair(e->uid, e->endpoint));
              else
                out.emplace_back(std::nullopt);
            }
            return out;
          },
          py::arg("uids"), py::arg("timeout"))
      .def(
          "store",
          [](const PyDht& d, const std::string& key, const py::bytes& value, double expiration_time,
             std::optional<std::string> subkey, double timeout) {
            dht::DhtStoreItem item;
            item.key = key;
            item.subkey = std::move(subkey);
            item.value = std::string(value);
            item.expiration = to_dht_time(expiration_time);
            const auto& node = d.node();
            py::gil_scoped_release no_gil;
            auto outcome = node->store({&item, 1}, deadline_in(timeout));
            return std::move(outcome).value_or_throw().at(0).ok();
          },
          py::arg("key"), py::arg("value"), py::arg("expiration_time"), py::arg("subkey"),
          py::arg("timeout"))
      .def(
          "get",
          [](const PyDht& d, const std::string& key, double timeout) -> py::object {
            const auto& node = d.node();
            Result<std::vector<std::optional<dht::Record>>> got = [&] {
              py::gil_scoped_release no_gil;
              return node->get({&key, 1}, deadline_in(timeout));
            }();
            std::optional<dht::Record> record = std::move(got).value_or_throw().at(0);
            if (!record || record->empty()) return py::none();
            if (record->regular) {
              return py::make_tuple(py::bytes(record->regular->value),
                                    record->regular->expiration / 1000.0);
            }
            py::dict entries;
            for (const auto& [subkey, entry] : record->dictionary)
              entries[py::str(subkey)] =
                  py::make_tuple(py::bytes(entry.value), entry.expiration / 1000.0);
            return py::make_tuple(entries, record->expiration() / 1000.0);
          },
          py::arg("key"), py::arg("timeout"))
      .def("shutdown", [](PyDht& d) {
        py::gil_scoped_release no_gil;  // stopping the node joins its thread
        d.shutdown();
      });
}

}  // namespace hivemind::python
