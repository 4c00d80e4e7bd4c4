// Thread placement with hwloc: the compute thread of a GPU on cores next to that GPU, the I/O
// threads on the other cores, and nothing at all when a launcher or the user already bound the
// process.
//
// Why: a compute thread that feeds a GPU from a far NUMA node pays the inter-socket link on every
// host-device copy, and an I/O thread that shares a core with a compute thread steals its cycles.
// Slurm (--cpu-bind), mpirun (--bind-to) and numactl already place processes on HPC systems; then
// the site's choice wins and the server only logs it.
//
// The planning is a pure function of a topology (the machine's, or a synthetic / XML one in tests),
// the devices, the options and the process's inherited binding, so it is tested without the
// hardware.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/result.h>

namespace hivemind::runtime {

// OS indices of processing units (hardware threads), sorted, no duplicates.
using CpuList = std::vector<int>;

// "0-3,8,10-11"; "" for an empty list.
std::string format_cpu_list(const CpuList& cpus);
// Parses "0-3,8,10-11" (spaces allowed). InvalidArgument naming the bad part.
Result<CpuList> parse_cpu_list(std::string_view text);

// Where the process's CPUs and devices are. Move-only; wraps an hwloc topology.
class Topology {
 public:
  // This machine, with its PCI devices (so GPUs can be located).
  static Result<Topology> load_system();
  // An hwloc synthetic description, e.g. "pack:2 numa:2 core:4 pu:2" (no I/O devices).
  static Result<Topology> from_synthetic(std::string_view description);
  // An hwloc XML export (as `lstopo --of xml` writes), I/O devices included.
  static Result<Topology> from_xml(std::string_view xml);

  Topology(Topology&&) noexcept;
  Topology& operator=(Topology&&) noexcept;
  ~Topology();

  // Every PU of the topology that the process may use (hwloc's allowed set).
  CpuList pus() const;
  int num_cores() const;
  int num_numa_nodes() const;
  // The PUs of each core, in topology order (only cores with at least one usable PU).
  std::vector<CpuList> cores() const;

  struct Locality {
    CpuList pus;  // the PUs of the object the device hangs off (its NUMA node's, or package's)
    int numa_node = -1;  // OS index of the nearest NUMA node, -1 when unknown
    std::string via;     // how it was found: "pci 0000:41:00.0", "osdev cuda0"
  };
  // The PUs local to a PCI device given by bus id ("0000:41:00.0", domain optional). NotFound when
  // the topology has no such device.
  Result<Locality> pci_locality(std::string_view bus_id) const;
  // The PUs local to an OS device hwloc names ("cuda0", "nvml0", "rsmi0"). NotFound when absent.
  Result<Locality> osdev_locality(std::string_view name) const;

  // A one-line summary: "2 packages, 4 NUMA nodes, 16 cores, 32 PUs".
  std::string summary() const;

 private:
  struct Impl;
  explicit Topology(std::unique_ptr<Impl> impl);
  // 0: this machine, 1: synthetic description, 2: XML text.
  static Result<Topology> load(int source, std::string_view text);
  std::unique_ptr<Impl> impl_;
};

// A device whose compute thread is to be placed.
struct ComputeDevice {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;
  int index = 0;  // CUDA ordinal as the process sees it (after CUDA_VISIBLE_DEVICES)
  std::string
      pci_bus_id;  // when known (CUDA builds look it up); else found as hwloc OS device cuda<index>
  std::string name() const;  // "cpu", "cuda:0"
};

// "cpu", "cuda", "cuda:1" -> a ComputeDevice. In CUDA builds the GPU's PCI bus id is looked up with
// the CUDA runtime (so the topology locates it even when hwloc has no CUDA plugin); elsewhere it
// stays empty and the GPU is looked up as hwloc OS device "cuda<N>".
Result<ComputeDevice> compute_device_from_string(std::string_view device);

struct PinningOptions {
  bool enabled = true;    // --cpu_bind auto | none
  std::string cpu_cores;  // restrict placement to these PUs ("0-15"); empty: all allowed PUs
  int cores_per_compute_thread =
      1;               // cores given to each compute thread (for its intra-op threads)
  int local_rank = 0;  // processes of one node that share cores take successive slices
};

// What the process inherited: a launcher binding, or an affinity mask narrower than the machine.
struct ExistingBinding {
  bool bound = false;
  std::string reason;  // "SLURM_CPU_BIND_TYPE=mask_cpu:", "affinity mask 0-3 of 0-31", ...
};
// `env` reads a variable (nullopt when unset); `affinity` is the mask the process inherited.
ExistingBinding detect_existing_binding(
    const std::function<std::optional<std::string>(const char*)>& env, const CpuList& affinity,
    const CpuList& machine);
// The same for this process (getenv, sched_getaffinity).
ExistingBinding detect_existing_binding(const Topology& topology);

struct BindingPlan {
  bool apply = false;                     // false: leave every thread where it is
  std::string reason;                     // why not applied, or notes on how it was chosen
  std::vector<CpuList> compute;           // per device, in the order given
  CpuList io;                             // for the transport's I/O threads
  std::vector<std::string> device_notes;  // per device: "local to pci 0000:41:00.0 (NUMA 2)"
  // "compute cuda:0 -> PUs 16-17 (local to pci 0000:41:00.0, NUMA 2); io -> PUs 0-15,18-31"
  std::string describe(std::span<const ComputeDevice> devices) const;
};

// Chooses the binding. Rules, in order:
//  1. disabled by option -> no binding;
//  2. already bound (Slurm, taskset, numactl, mpirun) and no explicit cpu_cores -> no binding,
//     logged;
//  3. each CUDA device's compute thread gets cores_per_compute_thread whole cores local to the GPU
//     (from its NUMA node / PCI locality), starting local_rank slices in, falling back to other
//     cores when the local ones run out, and to any core when the GPU cannot be located (noted);
//  4. a CPU device's compute thread gets the first cores of the allowed set (after local_rank
//     slices);
//  5. the I/O threads get every allowed core no compute thread took (all allowed cores if none is
//     left).
// InvalidArgument when cpu_cores is malformed or names PUs the process may not use.
Result<BindingPlan> plan_binding(const Topology& topology, std::span<const ComputeDevice> devices,
                                 const PinningOptions& options, const ExistingBinding& existing);

// Binds the calling thread to `cpus` (sched_setaffinity). IoError on failure.
Status bind_current_thread(const CpuList& cpus);
// The calling thread's current affinity.
CpuList current_thread_affinity();

}  // namespace hivemind::runtime
