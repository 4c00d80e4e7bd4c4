// Topology on hwloc: loading (system, synthetic, XML) and device locality lookups.
#include <algorithm>
#include <cstdio>

#include <fmt/format.h>
#include <hwloc.h>

#include <hivemind/runtime/pinning.h>

namespace hivemind::runtime {

struct Topology::Impl {
  hwloc_topology_t topo = nullptr;
  std::string xml;  // kept alive while hwloc parses it
  ~Impl() {
    if (topo != nullptr) hwloc_topology_destroy(topo);
  }
};

namespace {

CpuList to_list(hwloc_const_bitmap_t set) {
  CpuList out;
  int i = -1;
  while ((i = hwloc_bitmap_next(set, i)) != -1)
    out.push_back(i);
  return out;
}

enum class Source { kSystem, kSynthetic, kXml };

}  // namespace

Topology::Topology(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Topology::Topology(Topology&&) noexcept = default;
Topology& Topology::operator=(Topology&&) noexcept = default;
Topology::~Topology() = default;

Result<Topology> Topology::load(int source_index, std::string_view text) {
  const auto source = static_cast<Source>(source_index);
  auto impl = std::make_unique<Impl>();
  if (hwloc_topology_init(&impl->topo) != 0) return internal_error("hwloc_topology_init failed");
  // I/O objects are filtered out by default; keep the PCI devices (and their OS devices) that
  // locate GPUs.
  hwloc_topology_set_io_types_filter(impl->topo, source == Source::kSystem
                                                     ? HWLOC_TYPE_FILTER_KEEP_IMPORTANT
                                                     : HWLOC_TYPE_FILTER_KEEP_ALL);
  if (source == Source::kSynthetic) {
    const std::string desc(text);
    if (hwloc_topology_set_synthetic(impl->topo, desc.c_str()) != 0) {
      return invalid_argument_error(
          fmt::format("hwloc rejected the synthetic topology '{}'", desc));
    }
  } else if (source == Source::kXml) {
    impl->xml.assign(text);
    if (hwloc_topology_set_xmlbuffer(impl->topo, impl->xml.c_str(),
                                     static_cast<int>(impl->xml.size() + 1)) != 0) {
      return invalid_argument_error("hwloc rejected the XML topology");
    }
  }
  if (hwloc_topology_load(impl->topo) != 0) {
    return internal_error(source == Source::kXml ? "hwloc could not load the XML topology"
                                                 : "hwloc_topology_load failed");
  }
  return Topology(std::move(impl));
}

Result<Topology> Topology::load_system() {
  return load(static_cast<int>(Source::kSystem), {});
}
Result<Topology> Topology::from_synthetic(std::string_view description) {
  return load(static_cast<int>(Source::kSynthetic), description);
}
Result<Topology> Topology::from_xml(std::string_view xml) {
  return load(static_cast<int>(Source::kXml), xml);
}

CpuList Topology::pus() const {
  hwloc_bitmap_t set = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(impl_->topo));
  hwloc_bitmap_and(set, set, hwloc_topology_get_topology_cpuset(impl_->topo));
  CpuList out = to_list(set);
  hwloc_bitmap_free(set);
  return out;
}

int Topology::num_cores() const {
  return hwloc_get_nbobjs_by_type(impl_->topo, HWLOC_OBJ_CORE);
}

int Topology::num_numa_nodes() const {
  return hwloc_get_nbobjs_by_type(impl_->topo, HWLOC_OBJ_NUMANODE);
}

std::vector<CpuList> Topology::cores() const {
  const CpuList usable = pus();
  std::vector<CpuList> out;
  auto add = [&](hwloc_obj_t obj) {
    CpuList pus;
    for (int pu : to_list(obj->cpuset)) {
      if (std::binary_search(usable.begin(), usable.end(), pu)) pus.push_back(pu);
    }
    if (!pus.empty()) out.push_back(std::move(pus));
  };
  // Some virtual machines expose PUs without cores: then every PU is its own core.
  const hwloc_obj_type_t type = num_cores() > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
  for (hwloc_obj_t obj = hwloc_get_next_obj_by_type(impl_->topo, type, nullptr); obj != nullptr;
       obj = hwloc_get_next_obj_by_type(impl_->topo, type, obj)) {
    add(obj);
  }
  return out;
}

namespace {

Topology::Locality locality_of(hwloc_topology_t topo, hwloc_obj_t io, std::string via) {
  Topology::Locality out;
  hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, io);
  out.via = std::move(via);
  if (anc == nullptr) return out;
  out.pus = to_list(anc->cpuset);
  if (anc->nodeset != nullptr && !hwloc_bitmap_iszero(anc->nodeset))
    out.numa_node = hwloc_bitmap_first(anc->nodeset);
  return out;
}

}  // namespace

Result<Topology::Locality> Topology::pci_locality(std::string_view bus_id) const {
  const std::string id(bus_id);
  unsigned domain = 0, bus = 0, dev = 0, func = 0;
  char tail = 0;
  if (std::sscanf(id.c_str(), "%x:%x:%x.%x%c", &domain, &bus, &dev, &func, &tail) != 4) {
    domain = 0;
    if (std::sscanf(id.c_str(), "%x:%x.%x%c", &bus, &dev, &func, &tail) != 3) {
      return invalid_argument_error(fmt::format("bad PCI bus id '{}' (expected dddd:bb:dd.f)", id));
    }
  }
  hwloc_obj_t obj = hwloc_get_pcidev_by_busid(impl_->topo, domain, bus, dev, func);
  if (obj == nullptr) return not_found_error(fmt::format("no PCI device {} in the topology", id));
  return locality_of(impl_->topo, obj,
                     fmt::format("pci {:04x}:{:02x}:{:02x}.{:x}", domain, bus, dev, func));
}

Result<Topology::Locality> Topology::osdev_locality(std::string_view name) const {
  for (hwloc_obj_t obj = hwloc_get_next_osdev(impl_->topo, nullptr); obj != nullptr;
       obj = hwloc_get_next_osdev(impl_->topo, obj)) {
    if (obj->name != nullptr && name == obj->name) {
      return locality_of(impl_->topo, obj, fmt::format("osdev {}", name));
    }
  }
  return not_found_error(fmt::format("no OS device '{}' in the topology", name));
}

std::string Topology::summary() const {
  return fmt::format("{} package(s), {} NUMA node(s), {} core(s), {} PU(s)",
                     hwloc_get_nbobjs_by_type(impl_->topo, HWLOC_OBJ_PACKAGE), num_numa_nodes(),
                     num_cores(), pus().size());
}

}  // namespace hivemind::runtime
