// hivemind-bench-mpi-allreduce --bytes N --warmup W --iterations I [--keep-freed-memory 1]
//
// The baseline of `hivemind-bench allreduce`: OpenMPI's MPI_Allreduce (MPI_SUM, in place, float32)
// over the ranks mpirun started, timed the way the benchmark times its own rounds. Each iteration
// starts at a barrier; its time is the slowest rank's. Rank 0 prints one line:
//   mpi_allreduce ranks=R bytes=N seconds=S1,S2,...,SI
// The benchmark runs it under mpirun with the MCA settings of the link it compares against.
//
// --keep-freed-memory 1: glibc serves every allocation from its heap and never returns freed
// memory to the kernel. OpenMPI allocates a temporary buffer of the message's size in each large
// MPI_Allreduce; from 32 MiB on glibc maps such a buffer fresh every call, and on a VM with costly
// page faults that alone made a 64 MiB MPI_Allreduce 5-10x slower than with the memory kept
// (measured on the 2-core CI VM). The averaging backend reuses its round memory, so the benchmark
// compares it with the faster of the two.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <malloc.h>
#include <mpi.h>

namespace {

struct Options {
  long long bytes = 64ll << 20;
  int warmup = 3;
  int iterations = 10;
  bool keep_freed_memory = false;
};

bool parse(int argc, char** argv, Options& o, std::string& error) {
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) {
      error = "flag " + flag + " needs a value";
      return false;
    }
    char* end = nullptr;
    long long value = std::strtoll(argv[++i], &end, 10);
    if (end == argv[i] || *end != '\0' || value < 0) {
      error = "flag " + flag + " takes a non-negative integer, not '" + argv[i] + "'";
      return false;
    }
    if (flag == "--bytes") {
      o.bytes = value;
    } else if (flag == "--warmup") {
      o.warmup = static_cast<int>(value);
    } else if (flag == "--iterations") {
      o.iterations = static_cast<int>(value);
    } else if (flag == "--keep-freed-memory") {
      o.keep_freed_memory = value != 0;
    } else {
      error =
          "unknown flag " + flag + " (takes --bytes, --warmup, --iterations, --keep-freed-memory)";
      return false;
    }
  }
  if (o.bytes < 4 || o.bytes % 4 != 0 || o.iterations < 1) {
    error = "--bytes must be a positive multiple of 4 and --iterations at least 1";
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // Before MPI_Init (and before the flags are parsed), so that OpenMPI's own buffers come from the
  // kept heap too.
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--keep-freed-memory" && std::string(argv[i + 1]) != "0") {
      // Single-threaded still: no MPI or other thread exists before MPI_Init.
      mallopt(M_MMAP_MAX, 0);         // NOLINT(concurrency-mt-unsafe)
      mallopt(M_TRIM_THRESHOLD, -1);  // NOLINT(concurrency-mt-unsafe)
    }
  }
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);

  Options o;
  std::string error;
  if (!parse(argc, argv, o, error)) {
    if (rank == 0) std::fprintf(stderr, "hivemind-bench-mpi-allreduce: %s\n", error.c_str());
    MPI_Finalize();
    return 2;
  }
  const size_t count = static_cast<size_t>(o.bytes) / sizeof(float);
  std::vector<float> data(count, static_cast<float>(rank + 1));
  std::vector<double> seconds;
  for (int i = 0; i < o.warmup + o.iterations; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    MPI_Allreduce(MPI_IN_PLACE, data.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                  MPI_COMM_WORLD);
    double mine = MPI_Wtime() - start, slowest = 0;
    MPI_Reduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (i >= o.warmup) seconds.push_back(slowest);
  }
  if (rank == 0) {
    std::string line = "mpi_allreduce ranks=" + std::to_string(ranks) +
                       " bytes=" + std::to_string(o.bytes) +
                       " kept_memory=" + (o.keep_freed_memory ? "1" : "0") + " seconds=";
    for (size_t i = 0; i < seconds.size(); ++i) {
      char number[32];
      std::snprintf(number, sizeof number, "%s%.9f", i ? "," : "", seconds[i]);
      line += number;
    }
    std::printf("%s\n", line.c_str());
  }
  MPI_Finalize();
  return 0;
}
