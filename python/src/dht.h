// The Python DHT handle: a shared dht::Dht (its node runs on its own transport thread, or on an
// in-process server's) with the blocking calls made with the GIL released.
#pragma once

#include <memory>
#include <utility>

#include <pybind11/pybind11.h>

#include <hivemind/dht/dht.h>

namespace hivemind::python {

class PyDht {
 public:
  explicit PyDht(std::shared_ptr<dht::Dht> node) : node_(std::move(node)) {}
  // The node; throws (a Canceled StatusError) after shutdown().
  const std::shared_ptr<dht::Dht>& node() const;
  void shutdown() { node_.reset(); }
  bool alive() const { return node_ != nullptr; }

 private:
  std::shared_ptr<dht::Dht> node_;
};

void bind_dht(pybind11::module_& m);

}  // namespace hivemind::python
