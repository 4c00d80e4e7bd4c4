// hivemind-info: prints what this build of hivemind-cpp and this machine offer, so a user can tell
// at a glance why a transport, a GPU path or fast BLAS is (not) in use. Exits non-zero when the
// machine is misconfigured in a way that would silently cost performance (reference BLAS).
#include <cstdio>
#include <fstream>
#include <string>

#include <hivemind/averaging/nccl_backend.h>
#include <hivemind/common/blas_check.h>
#include <hivemind/common/env.h>
#include <hivemind/common/logging.h>
#include <hivemind/common/version.h>
#include <hivemind/transport/swarm_key.h>

#ifdef HIVEMIND_INFO_HAVE_UCX
#include <ucp/api/ucp.h>
#endif
#ifdef HIVEMIND_INFO_HAVE_HWLOC
#include <hwloc.h>
#endif
#ifdef HIVEMIND_INFO_HAVE_TORCH
#include <torch/cuda.h>
#include <torch/types.h>
#include <torch/utils.h>
#include <torch/version.h>
#endif
#ifdef HIVEMIND_INFO_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

#ifdef HIVEMIND_INFO_HAVE_UCX
// The number after `key` in a "key: value" file such as /proc/meminfo, or -1.
long proc_value(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0) continue;
    try {
      return std::stol(line.substr(key.size()));
    } catch (const std::exception&) {
      return -1;
    }
  }
  return -1;
}

// UCX puts its shared-memory segments in huge pages where the kernel has them
// (UCX_SYSV_HUGETLB_MODE and UCX_POSIX_HUGETLB_MODE are "try" by default). Without them each
// process faults every same-host peer's segments in 4 KiB at a time, which costs the first messages
// to each peer (docs/hosting.md, "Huge pages for UCX's shared memory").
void print_huge_pages() {
  const long total = proc_value("/proc/meminfo", "HugePages_Total:");
  const long free = proc_value("/proc/meminfo", "HugePages_Free:");
  const long page_kb = proc_value("/proc/meminfo", "Hugepagesize:");
  const long overcommit = proc_value("/proc/sys/vm/nr_overcommit_hugepages", "");
  if (total < 0 || free < 0 || overcommit < 0) {
    std::printf(
        "            huge pages: unknown (/proc/meminfo or vm.nr_overcommit_hugepages "
        "unreadable)\n");
  } else if (total == 0 && overcommit == 0) {
    std::printf(
        "            huge pages: none (vm.nr_hugepages and vm.nr_overcommit_hugepages are 0): "
        "UCX's "
        "shared memory is faulted in 4 KiB pages, which slows the first messages to each same-host "
        "peer (docs/hosting.md)\n");
  } else {
    std::printf(
        "            huge pages: %ld of %ld free, up to %ld more on demand (%ld kB each): UCX's "
        "shared memory takes them while any are left\n",
        free, total, overcommit, page_kb);
  }
}
#endif

void print_ucx() {
#ifdef HIVEMIND_INFO_HAVE_UCX
  std::printf("ucx:        %s\n", ucp_get_version_string());
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_AM;
  ucp_config_t* config = nullptr;
  ucp_context_h context = nullptr;
  if (ucp_config_read(nullptr, nullptr, &config) == UCS_OK &&
      ucp_init(&params, config, &context) == UCS_OK) {
    ucp_context_attr_t attr{};
    attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
    if (ucp_context_query(context, &attr) == UCS_OK) {
      bool cuda = attr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA);
      std::printf("            memory types: host%s -> GPU tensors are %s\n", cuda ? ", cuda" : "",
                  cuda ? "passed to UCX directly" : "staged through pinned host memory");
    }
    ucp_cleanup(context);
  } else {
    std::printf("            ucp_init failed: the transport will fall back to TCP\n");
  }
  if (config) ucp_config_release(config);
  // The transport turns on UCX's shared-memory peer-failure handling from 1.14 only (earlier
  // releases abort with it), so same-host peers of a 1.13 build talk over tcp/lo.
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  if (major > 1 || (major == 1 && minor >= 14)) {
    std::printf(
        "            same host: shared memory (posix, sysv; unless UCX_TLS leaves them out)\n");
    print_huge_pages();
  } else {
    std::printf("            same host: tcp over loopback (UCX < 1.14; docs/hosting.md)\n");
  }
#else
  std::printf("ucx:        not built in (TCP transport only)\n");
#endif
}

void print_cuda() {
#ifdef HIVEMIND_INFO_HAVE_CUDA
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    std::printf("cuda:       compiled in; no usable device (%s)\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "none found");
    return;
  }
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, d);
    std::printf("cuda:       device %d: %s, %.1f GiB, sm_%d%d\n", d, prop.name,
                prop.totalGlobalMem / double(1ull << 30), prop.major, prop.minor);
  }
#else
  std::printf("cuda:       not built in\n");
#endif
}

// Which backends an Averager of this build can choose from (docs/averaging.md); the transport
// backend is always there.
void print_averaging() {
  namespace averaging = hivemind::averaging;
  auto version = averaging::nccl_version();
  if (!version.is_ok()) {
    std::printf("averaging:  backends: transport only (built without NCCL)\n");
    return;
  }
  hivemind::Status here = averaging::nccl_available();
  std::string unusable = here.is_ok() ? "" : "; unusable here: " + here.message();
  std::printf("averaging:  backends: nccl (NCCL %s%s), transport\n", version->c_str(),
              unusable.c_str());
}

void print_topology() {
#ifdef HIVEMIND_INFO_HAVE_HWLOC
  hwloc_topology_t topology;
  hwloc_topology_init(&topology);
  hwloc_topology_load(topology);
  int packages = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PACKAGE);
  int numa = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE);
  int cores = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE);
  int pus = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PU);
  std::printf("topology:   %d package(s), %d NUMA node(s), %d core(s), %d hardware thread(s)\n",
              packages, numa, cores, pus);
  hwloc_topology_destroy(topology);
#else
  std::printf("topology:   hwloc not built in\n");
#endif
}

bool print_torch_and_blas() {
#ifdef HIVEMIND_INFO_HAVE_TORCH
  std::printf("libtorch:   %d.%d.%d, intra-op threads %d, cuda %s\n", TORCH_VERSION_MAJOR,
              TORCH_VERSION_MINOR, TORCH_VERSION_PATCH, torch::get_num_threads(),
              torch::cuda::is_available() ? "available" : "not available");
  // A tiny matmul makes LibTorch load its BLAS so the check sees what the experts will use.
  auto product = torch::ones({8, 8}).matmul(torch::ones({8, 8}));
  (void)product;
  hivemind::BlasInfo blas = hivemind::detect_loaded_blas();
  const char* kind = "none loaded";
  switch (blas.kind) {
    case hivemind::BlasKind::kOpenBlas:
      kind = "OpenBLAS";
      break;
    case hivemind::BlasKind::kMkl:
      kind = "MKL";
      break;
    case hivemind::BlasKind::kBlis:
      kind = "BLIS";
      break;
    case hivemind::BlasKind::kReference:
      kind = "REFERENCE (slow!)";
      break;
    case hivemind::BlasKind::kOther:
      kind = "other";
      break;
    case hivemind::BlasKind::kNone:
      break;
  }
  std::printf("blas:       %s %s\n", kind, blas.library_path.c_str());
  return hivemind::warn_if_slow_blas();
#else
  std::printf("libtorch:   not built in\n");
  return true;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf(
        "usage: hivemind-info [--version | --new-swarm-key FILE]\n"
        "  Prints the transports, GPUs, averaging backends, BLAS, CPU topology and launcher "
        "environment this build of "
        "hivemind-cpp sees.\n"
        "  Exits 1 if LibTorch would run on the reference BLAS.\n"
        "  --new-swarm-key FILE: writes a new random swarm key (32 bytes as 64 hex digits) to "
        "FILE, "
        "mode 0600, atomically; never over an existing file (docs/security.md).\n");
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--new-swarm-key") {
    if (argc != 3) {
      std::fprintf(stderr, "hivemind-info: --new-swarm-key takes one argument, the key file\n");
      return 2;
    }
    auto key = hivemind::transport::SwarmKey::generate();
    hivemind::Status written = key.is_ok() ? key->write_new(argv[2]) : key.status();
    if (!written.is_ok()) {
      std::fprintf(stderr, "hivemind-info: %s\n", written.to_string().c_str());
      return 1;
    }
    std::printf(
        "wrote a new swarm key to %s (fingerprint %s); pass it to every member with "
        "--swarm_key_file or HIVEMIND_SWARM_KEY_FILE\n",
        argv[2], key->fingerprint().c_str());
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--version") {
    std::printf("%s\n", hivemind::version_line("hivemind-info").c_str());
    return 0;
  }
  if (hivemind::Status logging = hivemind::configure_logging_from_env(); !logging.is_ok()) {
    std::fprintf(stderr, "hivemind-info: %s\n", logging.to_string().c_str());
    return 2;
  }
  std::printf("hivemind-cpp %.*s\n", static_cast<int>(hivemind::version().size()),
              hivemind::version().data());
  print_ucx();
  print_cuda();
  print_averaging();
  print_topology();
  bool blas_ok = print_torch_and_blas();
  auto launch = hivemind::read_launch_info();
  if (launch.is_ok()) {
    std::printf("launch:     %s (rank %d of %d, local rank %d, node %d) on %s\n",
                launch->source.c_str(), launch->rank, launch->world_size, launch->local_rank,
                launch->node_rank, hivemind::short_hostname().c_str());
  } else {
    std::printf("launch:     %s\n", launch.status().to_string().c_str());
  }
  return blas_ok ? 0 : 1;
}
