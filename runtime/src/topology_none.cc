// Topology in builds without hwloc: nothing can be loaded, so plan_binding is never reached and the
// server logs that threads stay unbound.
#include <hivemind/runtime/pinning.h>

namespace hivemind::runtime {

struct Topology::Impl {};

Topology::Topology(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Topology::Topology(Topology&&) noexcept = default;
Topology& Topology::operator=(Topology&&) noexcept = default;
Topology::~Topology() = default;

Result<Topology> Topology::load(int, std::string_view) {
  return unsupported_error("this build has no hwloc: CPU binding is unavailable");
}
Result<Topology> Topology::load_system() {
  return load(0, {});
}
Result<Topology> Topology::from_synthetic(std::string_view text) {
  return load(1, text);
}
Result<Topology> Topology::from_xml(std::string_view text) {
  return load(2, text);
}
CpuList Topology::pus() const {
  return {};
}
int Topology::num_cores() const {
  return 0;
}
int Topology::num_numa_nodes() const {
  return 0;
}
std::vector<CpuList> Topology::cores() const {
  return {};
}
Result<Topology::Locality> Topology::pci_locality(std::string_view) const {
  return unsupported_error("no hwloc");
}
Result<Topology::Locality> Topology::osdev_locality(std::string_view) const {
  return unsupported_error("no hwloc");
}
std::string Topology::summary() const {
  return "unknown (no hwloc)";
}

}  // namespace hivemind::runtime
