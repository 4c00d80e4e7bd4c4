// Thread placement on hwloc synthetic topologies and on XML topologies with GPUs on PCI buses.
#include <algorithm>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <hivemind/runtime/pinning.h>

namespace hivemind::runtime {
namespace {

// hwloc's bitmap text: 32-bit words, most significant first, comma separated.
std::string mask(const CpuList& bits) {
  int top = 0;
  for (int b : bits)
    top = std::max(top, b);
  const int words = top / 32 + 1;
  std::string out;
  for (int w = words - 1; w >= 0; --w) {
    uint32_t word = 0;
    for (int b : bits) {
      if (b / 32 == w) word |= 1u << (b % 32);
    }
    out += fmt::format("{}0x{:08x}", out.empty() ? "" : ",", word);
  }
  return out;
}

CpuList range(int lo, int hi) {  // [lo, hi)
  CpuList out;
  for (int i = lo; i < hi; ++i)
    out.push_back(i);
  return out;
}

struct Gpu {
  int numa;
  std::string bus_id;  // "0000:41:00.0"
  std::string name;    // "cuda0"
};

// An hwloc 2 XML topology: `packages` sockets, each with `numa_per_package` NUMA nodes (as hwloc
// shows them: a Group holding the NUMA node and its cores), `cores_per_numa` cores of
// `pus_per_core` PUs, and GPUs behind a host bridge under the NUMA node they are attached to.
std::string topology_xml(int packages, int numa_per_package, int cores_per_numa, int pus_per_core,
                         const std::vector<Gpu>& gpus) {
  int gp = 1;
  const int pus_per_numa = cores_per_numa * pus_per_core;
  const int total_numa = packages * numa_per_package;
  auto sets = [](const CpuList& cpus, const CpuList& nodes) {
    return fmt::format(R"(cpuset="{0}" complete_cpuset="{0}" nodeset="{1}" complete_nodeset="{1}")",
                       mask(cpus), mask(nodes));
  };
  std::string xml = R"(<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE topology SYSTEM "hwloc2.dtd">
<topology version="2.0">
)";
  xml += fmt::format(R"(<object type="Machine" os_index="0" {} gp_index="{}">)",
                     sets(range(0, total_numa * pus_per_numa), range(0, total_numa)), gp++) +
         "\n";
  for (int p = 0; p < packages; ++p) {
    const int n0 = p * numa_per_package;
    xml += fmt::format(R"(<object type="Package" os_index="{}" {} gp_index="{}">)", p,
                       sets(range(n0 * pus_per_numa, (n0 + numa_per_package) * pus_per_numa),
                            range(n0, n0 + numa_per_package)),
                       gp++) +
           "\n";
    for (int n = n0; n < n0 + numa_per_package; ++n) {
      const CpuList cpus = range(n * pus_per_numa, (n + 1) * pus_per_numa);
      xml += fmt::format(R"(<object type="Group" {} gp_index="{}" kind="1001" subkind="0">)",
                         sets(cpus, {n}), gp++) +
             "\n";
      xml +=
          fmt::format(
              R"(<object type="NUMANode" os_index="{}" {} gp_index="{}" local_memory="1073741824"/>)",
              n, sets(cpus, {n}), gp++) +
          "\n";
      for (int c = 0; c < cores_per_numa; ++c) {
        const int core = n * cores_per_numa + c;
        const int first = core * pus_per_core;
        xml += fmt::format(R"(<object type="Core" os_index="{}" {} gp_index="{}">)", core,
                           sets(range(first, first + pus_per_core), {n}), gp++) +
               "\n";
        for (int u = first; u < first + pus_per_core; ++u) {
          xml += fmt::format(R"(<object type="PU" os_index="{}" {} gp_index="{}"/>)", u,
                             sets({u}, {n}), gp++) +
                 "\n";
        }
        xml += "</object>\n";
      }
      for (const Gpu& g : gpus) {
        if (g.numa != n) continue;
        const std::string bus = g.bus_id.substr(5, 2);
        xml +=
            fmt::format(
                R"(<object type="Bridge" gp_index="{}" bridge_type="0-1" depth="0" bridge_pci="0000:[{}-{}]">)",
                gp++, bus, bus) +
            "\n";
        xml +=
            fmt::format(
                R"(<object type="PCIDev" gp_index="{}" pci_busid="{}" pci_type="0302 [10de:2330] [10de:16c1] a1" pci_link_speed="0.000000">)",
                gp++, g.bus_id) +
            "\n";
        xml += fmt::format(R"(<object type="OSDev" gp_index="{}" name="{}" osdev_type="5"/>)", gp++,
                           g.name) +
               "\n";
        xml += "</object>\n</object>\n";
      }
      xml += "</object>\n";
    }
    xml += "</object>\n";
  }
  xml += "</object>\n</topology>\n";
  return xml;
}

ComputeDevice cuda(int index, std::string bus_id = "") {
  ComputeDevice d;
  d.kind = ComputeDevice::Kind::kCuda;
  d.index = index;
  d.pci_bus_id = std::move(bus_id);
  return d;
}

const ExistingBinding kUnbound{};

Topology synthetic(const std::string& desc) {
  auto t = Topology::from_synthetic(desc);
  if (!t.is_ok()) {
    ADD_FAILURE() << t.status().to_string();
    std::abort();
  }
  return std::move(t).value();
}

class PinningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto probe = Topology::from_synthetic("pu:1");
    if (!probe.is_ok() && probe.status().code() == StatusCode::kUnsupported)
      GTEST_SKIP() << "built without hwloc";
  }
};

TEST_F(PinningTest, CpuListsRoundTrip) {
  EXPECT_EQ(format_cpu_list({0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11");
  EXPECT_EQ(format_cpu_list({}), "");
  EXPECT_EQ(parse_cpu_list("0-3, 8,10-11").value(), (CpuList{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(parse_cpu_list("5,1,1").value(), (CpuList{1, 5}));
  for (const char* bad : {"", "a", "3-1", "1,,2", "-1", "1-"}) {
    auto r = parse_cpu_list(bad);
    EXPECT_FALSE(r.is_ok()) << bad;
  }
}

TEST_F(PinningTest, SyntheticTwoSocketsFourNumaNodes) {
  Topology topo = synthetic("pack:2 numa:2 core:4 pu:2");
  EXPECT_EQ(topo.pus().size(), 32u);
  EXPECT_EQ(topo.num_cores(), 16);
  EXPECT_EQ(topo.num_numa_nodes(), 4);
  EXPECT_EQ(topo.cores()[1], (CpuList{2, 3}));

  const ComputeDevice cpu;
  PinningOptions options;
  options.cores_per_compute_thread = 2;
  BindingPlan plan = plan_binding(topo, std::span(&cpu, 1), options, kUnbound).value();
  ASSERT_TRUE(plan.apply);
  EXPECT_EQ(plan.compute.at(0), (CpuList{0, 1, 2, 3}));  // two whole cores, hyperthreads together
  EXPECT_EQ(plan.io, range(4, 32));
  EXPECT_NE(plan.describe(std::span(&cpu, 1)).find("compute cpu -> PUs 0-3"), std::string::npos)
      << plan.describe(std::span(&cpu, 1));

  // A configured core set on a CPU-only host: compute takes its first core, I/O the rest of it.
  options.cores_per_compute_thread = 1;
  options.cpu_cores = "8-15";
  plan = plan_binding(topo, std::span(&cpu, 1), options, kUnbound).value();
  EXPECT_EQ(plan.compute.at(0), (CpuList{8, 9}));
  EXPECT_EQ(plan.io, range(10, 16));

  // The next local rank takes the next slice.
  options.local_rank = 1;
  plan = plan_binding(topo, std::span(&cpu, 1), options, kUnbound).value();
  EXPECT_EQ(plan.compute.at(0), (CpuList{10, 11}));

  options.cpu_cores = "30-40";
  auto bad = plan_binding(topo, std::span(&cpu, 1), options, kUnbound);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("may not use"), std::string::npos);
}

TEST_F(PinningTest, SingleCoreMachineSharesTheCoreBetweenComputeAndIo) {
  Topology topo = synthetic("core:1 pu:2");
  const ComputeDevice cpu;
  BindingPlan plan = plan_binding(topo, std::span(&cpu, 1), PinningOptions{}, kUnbound).value();
  EXPECT_EQ(plan.compute.at(0), (CpuList{0, 1}));
  EXPECT_EQ(plan.io, (CpuList{0, 1}));
  EXPECT_NE(plan.reason.find("share"), std::string::npos);
}

TEST_F(PinningTest, AlreadyBoundProcessesAreLeftAlone) {
  auto env_with = [](std::map<std::string, std::string> vars) {
    return [vars](const char* name) -> std::optional<std::string> {
      auto it = vars.find(name);
      return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
  };
  const CpuList machine = range(0, 8);
  ExistingBinding slurm =
      detect_existing_binding(env_with({{"SLURM_CPU_BIND_TYPE", "mask_cpu:"}}), machine, machine);
  EXPECT_TRUE(slurm.bound);
  EXPECT_NE(slurm.reason.find("SLURM_CPU_BIND_TYPE=mask_cpu:"), std::string::npos);
  EXPECT_FALSE(
      detect_existing_binding(env_with({{"SLURM_CPU_BIND", "quiet,none"}}), machine, machine)
          .bound);
  ExistingBinding taskset = detect_existing_binding(env_with({}), range(0, 4), machine);
  EXPECT_TRUE(taskset.bound);
  EXPECT_NE(taskset.reason.find("0-3"), std::string::npos);
  EXPECT_FALSE(detect_existing_binding(env_with({}), machine, machine).bound);

  Topology topo = synthetic("pack:2 numa:2 core:2 pu:1");
  const ComputeDevice cpu;
  BindingPlan plan = plan_binding(topo, std::span(&cpu, 1), PinningOptions{}, slurm).value();
  EXPECT_FALSE(plan.apply);
  EXPECT_NE(plan.describe(std::span(&cpu, 1)).find("already bound"), std::string::npos);
  // An explicit core set is the user's own choice and still applies.
  PinningOptions explicit_cores;
  explicit_cores.cpu_cores = "2-3";
  plan = plan_binding(topo, std::span(&cpu, 1), explicit_cores, slurm).value();
  EXPECT_TRUE(plan.apply);
  EXPECT_EQ(plan.compute.at(0), (CpuList{2}));
  PinningOptions off;
  off.enabled = false;
  EXPECT_FALSE(plan_binding(topo, std::span(&cpu, 1), off, kUnbound).value().apply);
}

TEST_F(PinningTest, GpuComputeThreadGoesToTheGpusNumaNode) {
  // 2 sockets x 2 NUMA nodes x 2 cores x 2 PUs; the GPU hangs off NUMA node 2 (PUs 8-11).
  const std::string xml = topology_xml(2, 2, 2, 2, {{2, "0000:41:00.0", "cuda0"}});
  auto loaded = Topology::from_xml(xml);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().to_string();
  Topology topo = std::move(loaded).value();
  EXPECT_EQ(topo.pus().size(), 16u);
  EXPECT_EQ(topo.num_numa_nodes(), 4);

  auto by_bus = topo.pci_locality("0000:41:00.0");
  ASSERT_TRUE(by_bus.is_ok()) << by_bus.status().to_string();
  EXPECT_EQ(by_bus->pus, range(8, 12));
  EXPECT_EQ(by_bus->numa_node, 2);
  EXPECT_EQ(topo.pci_locality("41:00.0").value().pus, range(8, 12));  // domain optional
  EXPECT_EQ(topo.osdev_locality("cuda0").value().numa_node, 2);
  EXPECT_EQ(topo.pci_locality("0000:42:00.0").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(topo.pci_locality("zz").status().code(), StatusCode::kInvalidArgument);

  for (const ComputeDevice& gpu : {cuda(0), cuda(0, "0000:41:00.0")}) {
    BindingPlan plan = plan_binding(topo, std::span(&gpu, 1), PinningOptions{}, kUnbound).value();
    ASSERT_TRUE(plan.apply);
    EXPECT_EQ(plan.compute.at(0), (CpuList{8, 9}));
    CpuList expected_io = range(0, 8);
    for (int c : range(10, 16))
      expected_io.push_back(c);
    EXPECT_EQ(plan.io, expected_io);
    EXPECT_NE(plan.describe(std::span(&gpu, 1)).find("NUMA 2"), std::string::npos)
        << plan.describe(std::span(&gpu, 1));
  }
  // Two processes of one node on GPUs of the same NUMA node take different cores.
  PinningOptions rank1;
  rank1.local_rank = 1;
  const ComputeDevice gpu = cuda(0);
  EXPECT_EQ(plan_binding(topo, std::span(&gpu, 1), rank1, kUnbound).value().compute.at(0),
            (CpuList{10, 11}));
  // More cores wanted than the NUMA node has: the local ones first, then others.
  PinningOptions wide;
  wide.cores_per_compute_thread = 3;
  CpuList got = plan_binding(topo, std::span(&gpu, 1), wide, kUnbound).value().compute.at(0);
  ASSERT_EQ(got.size(), 6u);
  const CpuList local = range(8, 12);
  EXPECT_TRUE(std::includes(got.begin(), got.end(), local.begin(), local.end()))
      << format_cpu_list(got);
}

TEST_F(PinningTest, TwoGpusOnDifferentSocketsAndAnUnknownOne) {
  const std::string xml =
      topology_xml(2, 2, 2, 1, {{2, "0000:41:00.0", "cuda0"}, {0, "0000:01:00.0", "cuda1"}});
  Topology topo = Topology::from_xml(xml).value();
  const std::vector<ComputeDevice> gpus = {cuda(0), cuda(1), cuda(7)};
  BindingPlan plan = plan_binding(topo, gpus, PinningOptions{}, kUnbound).value();
  ASSERT_EQ(plan.compute.size(), 3u);
  EXPECT_EQ(plan.compute[0], (CpuList{4}));  // NUMA 2 = PUs 4-5
  EXPECT_EQ(plan.compute[1], (CpuList{0}));  // NUMA 0 = PUs 0-1
  EXPECT_EQ(plan.compute[2].size(), 1u);     // not located: any free core
  EXPECT_NE(plan.device_notes[2].find("not located"), std::string::npos);
  for (int c : plan.io) {
    EXPECT_NE(c, 4);
    EXPECT_NE(c, 0);
    EXPECT_NE(c, plan.compute[2][0]);
  }
  EXPECT_EQ(plan.io.size(), 5u);
}

TEST_F(PinningTest, BadTopologiesAreErrors) {
  EXPECT_FALSE(Topology::from_synthetic("pack:banana").is_ok());
  EXPECT_FALSE(Topology::from_xml("<topology>").is_ok());
}

TEST_F(PinningTest, ThisMachineAndRealBinding) {
  auto topo = Topology::load_system();
  ASSERT_TRUE(topo.is_ok()) << topo.status().to_string();
  EXPECT_FALSE(topo->pus().empty());
  EXPECT_FALSE(topo->summary().empty());
  const CpuList allowed = current_thread_affinity();
  ASSERT_FALSE(allowed.empty());
  CpuList seen;
  Status bound;
  std::thread t([&] {
    bound = bind_current_thread({allowed.back()});
    seen = current_thread_affinity();
  });
  t.join();
  ASSERT_TRUE(bound.is_ok()) << bound.to_string();
  EXPECT_EQ(seen, CpuList{allowed.back()});
  EXPECT_EQ(current_thread_affinity(), allowed);  // only that thread moved
  EXPECT_FALSE(bind_current_thread({}).is_ok());
  EXPECT_EQ(compute_device_from_string("cuda:3").value().index, 3);
  EXPECT_EQ(compute_device_from_string("cpu").value().kind, ComputeDevice::Kind::kCpu);
  EXPECT_FALSE(compute_device_from_string("tpu").is_ok());
  EXPECT_FALSE(compute_device_from_string("cuda:x").is_ok());
}

}  // namespace
}  // namespace hivemind::runtime
