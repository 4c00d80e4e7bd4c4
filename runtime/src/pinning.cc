// The hwloc-free half of pinning: CPU lists, inherited-binding detection, the placement plan,
// binding.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <set>

#include <fmt/format.h>
#include <sched.h>

#include <hivemind/runtime/pinning.h>

namespace hivemind::runtime {

std::string format_cpu_list(const CpuList& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1)
      ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return out;
}

Result<CpuList> parse_cpu_list(std::string_view text) {
  std::set<int> cpus;
  std::string cleaned;
  for (char c : text) {
    if (!std::isspace(static_cast<unsigned char>(c))) cleaned += c;
  }
  if (cleaned.empty()) return invalid_argument_error("empty CPU list (expected e.g. \"0-3,8\")");
  size_t pos = 0;
  while (pos <= cleaned.size()) {
    size_t comma = cleaned.find(',', pos);
    if (comma == std::string::npos) comma = cleaned.size();
    const std::string part = cleaned.substr(pos, comma - pos);
    auto bad = [&] {
      return invalid_argument_error(fmt::format(
          "bad CPU list element '{}' in '{}' (expected N or N-M)", part, std::string(text)));
    };
    if (part.empty()) return bad();
    const size_t dash = part.find('-');
    auto number = [](const std::string& s, int& out) {
      if (s.empty() || s.size() > 6 || !std::all_of(s.begin(), s.end(), ::isdigit)) return false;
      out = std::atoi(s.c_str());
      return true;
    };
    int lo = 0;
    int hi = 0;
    if (dash == std::string::npos) {
      if (!number(part, lo)) return bad();
      hi = lo;
    } else if (!number(part.substr(0, dash), lo) || !number(part.substr(dash + 1), hi) || hi < lo) {
      return bad();
    }
    for (int c = lo; c <= hi; ++c)
      cpus.insert(c);
    pos = comma + 1;
  }
  return CpuList(cpus.begin(), cpus.end());
}

std::string ComputeDevice::name() const {
  return kind == Kind::kCpu ? std::string("cpu") : fmt::format("cuda:{}", index);
}

ExistingBinding detect_existing_binding(
    const std::function<std::optional<std::string>(const char*)>& env, const CpuList& affinity,
    const CpuList& machine) {
  for (const char* var : {"SLURM_CPU_BIND_TYPE", "SLURM_CPU_BIND"}) {
    std::optional<std::string> value = env(var);
    if (!value || value->empty()) continue;
    std::string lower = *value;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    if (lower.find("none") != std::string::npos) continue;
    return {true, fmt::format("{}={} (Slurm bound this task)", var, *value)};
  }
  const std::set<int> have(affinity.begin(), affinity.end());
  const bool narrower = !affinity.empty() && std::any_of(machine.begin(), machine.end(),
                                                         [&](int c) { return !have.count(c); });
  if (narrower) {
    return {true, fmt::format("the inherited affinity mask {} is narrower than the machine's {} "
                              "(taskset, numactl or the launcher bound this process)",
                              format_cpu_list(affinity), format_cpu_list(machine))};
  }
  return {};
}

ExistingBinding detect_existing_binding(const Topology& topology) {
  auto env = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  // hwloc's allowed set can exclude what cgroups forbid; the affinity mask is what taskset & co.
  // set.
  return detect_existing_binding(env, current_thread_affinity(), topology.pus());
}

std::string BindingPlan::describe(std::span<const ComputeDevice> devices) const {
  if (!apply) return fmt::format("no CPU binding: {}", reason);
  std::string out;
  for (size_t i = 0; i < compute.size() && i < devices.size(); ++i) {
    out += fmt::format("compute {} -> PUs {} ({}); ", devices[i].name(),
                       format_cpu_list(compute[i]), i < device_notes.size() ? device_notes[i] : "");
  }
  out += fmt::format("io -> PUs {}", format_cpu_list(io));
  if (!reason.empty()) out += fmt::format(" [{}]", reason);
  return out;
}

namespace {

bool subset(const CpuList& a, const CpuList& b) {
  return std::includes(b.begin(), b.end(), a.begin(), a.end());
}

bool intersects(const CpuList& a, const CpuList& b) {
  for (int x : a) {
    if (std::binary_search(b.begin(), b.end(), x)) return true;
  }
  return false;
}

CpuList merge(const std::vector<CpuList>& lists) {
  std::set<int> all;
  for (const CpuList& l : lists)
    all.insert(l.begin(), l.end());
  return CpuList(all.begin(), all.end());
}

}  // namespace

Result<BindingPlan> plan_binding(const Topology& topology, std::span<const ComputeDevice> devices,
                                 const PinningOptions& options, const ExistingBinding& existing) {
  BindingPlan plan;
  if (!options.enabled) {
    plan.reason = "pinning disabled (cpu_bind=none)";
    return plan;
  }
  const CpuList allowed = topology.pus();
  CpuList usable = allowed;
  if (!options.cpu_cores.empty()) {
    HIVEMIND_ASSIGN_OR_RETURN(usable, parse_cpu_list(options.cpu_cores));
    if (!subset(usable, allowed)) {
      return invalid_argument_error(
          fmt::format("cpu_cores '{}' names PUs this process may not use (usable: {})",
                      options.cpu_cores, format_cpu_list(allowed)));
    }
  } else if (existing.bound) {
    plan.reason = fmt::format("already bound: {}; leaving threads where the launcher put them",
                              existing.reason);
    return plan;
  }
  // Whole cores, restricted to the usable PUs: hyperthreads of one core are not split across
  // threads.
  std::vector<CpuList> cores;
  for (const CpuList& core : topology.cores()) {
    CpuList pus;
    for (int pu : core) {
      if (std::binary_search(usable.begin(), usable.end(), pu)) pus.push_back(pu);
    }
    if (!pus.empty()) cores.push_back(std::move(pus));
  }
  if (cores.empty()) return invalid_argument_error("no usable core to bind threads to");
  const size_t need = static_cast<size_t>(std::max(1, options.cores_per_compute_thread));
  std::vector<bool> taken(cores.size(), false);
  std::vector<std::string> notes;

  for (const ComputeDevice& device : devices) {
    std::vector<size_t> local;
    std::vector<size_t> remote;
    std::string note;
    if (device.kind == ComputeDevice::Kind::kCuda) {
      Result<Topology::Locality> where =
          device.pci_bus_id.empty() ? topology.osdev_locality(fmt::format("cuda{}", device.index))
                                    : topology.pci_locality(device.pci_bus_id);
      if (where.is_ok()) {
        for (size_t c = 0; c < cores.size(); ++c) {
          (intersects(cores[c], where->pus) ? local : remote).push_back(c);
        }
        note = where->numa_node >= 0
                   ? fmt::format("local to {}, NUMA {}", where->via, where->numa_node)
                   : fmt::format("local to {}", where->via);
        if (local.empty()) note += "; none of its cores is usable, using others";
      } else {
        for (size_t c = 0; c < cores.size(); ++c)
          local.push_back(c);
        note = fmt::format("GPU not located ({}), any core", where.status().message());
      }
    } else {
      for (size_t c = 0; c < cores.size(); ++c)
        local.push_back(c);
      note = "cpu device";
    }
    // Processes of one node (local ranks) that see GPUs on the same NUMA node take successive
    // slices.
    if (!local.empty()) {
      const size_t shift =
          (static_cast<size_t>(std::max(0, options.local_rank)) * need) % local.size();
      std::rotate(local.begin(), local.begin() + static_cast<std::ptrdiff_t>(shift), local.end());
    }
    std::vector<size_t> picked;
    for (const auto* order : {&local, &remote}) {
      for (size_t c : *order) {
        if (picked.size() < need && !taken[c]) picked.push_back(c);
      }
    }
    if (picked.size() < need) {
      // More compute threads than cores: share rather than leave a thread unbound.
      for (size_t c : local.empty() ? remote : local) {
        if (picked.size() < need && std::find(picked.begin(), picked.end(), c) == picked.end())
          picked.push_back(c);
      }
      note += "; shares cores with another compute thread";
    }
    std::vector<CpuList> pus;
    for (size_t c : picked) {
      taken[c] = true;
      pus.push_back(cores[c]);
    }
    plan.compute.push_back(merge(pus));
    notes.push_back(std::move(note));
  }
  std::vector<CpuList> free_cores;
  for (size_t c = 0; c < cores.size(); ++c) {
    if (!taken[c]) free_cores.push_back(cores[c]);
  }
  if (free_cores.empty()) {
    plan.io = merge(cores);
    plan.reason = "no core left for I/O threads; they share the compute cores";
  } else {
    plan.io = merge(free_cores);
  }
  plan.apply = true;
  plan.device_notes = std::move(notes);
  return plan;
}

Status bind_current_thread(const CpuList& cpus) {
  if (cpus.empty()) return invalid_argument_error("cannot bind a thread to an empty CPU list");
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) {
    if (c < 0 || c >= CPU_SETSIZE)
      return invalid_argument_error(fmt::format("CPU {} out of range", c));
    CPU_SET(c, &set);
  }
  if (sched_setaffinity(0, sizeof(set), &set) != 0) return errno_error("sched_setaffinity", errno);
  return Status::ok();
}

CpuList current_thread_affinity() {
  cpu_set_t set;
  CPU_ZERO(&set);
  CpuList out;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return out;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) out.push_back(c);
  }
  return out;
}

}  // namespace hivemind::runtime
