// Replays fuzz inputs without libFuzzer: every file under the given paths, plus a deterministic set
// of mutated inputs derived from them, goes through LLVMFuzzerTestOneInput. Lets gcc builds (and
// ASan builds) run the fuzz targets as regression tests.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<uint8_t> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void run(const std::vector<uint8_t>& input) {
  LLVMFuzzerTestOneInput(input.data(), input.size());
}

// Byte flips, truncations and random tails: cheap coverage of the length checks near each seed.
void run_mutations(const std::vector<uint8_t>& seed, std::mt19937_64& rng) {
  for (size_t cut = 0; cut < seed.size(); cut += 1 + seed.size() / 64) {
    run(std::vector<uint8_t>(seed.begin(), seed.begin() + static_cast<std::ptrdiff_t>(cut)));
  }
  for (int i = 0; i < 256 && !seed.empty(); ++i) {
    std::vector<uint8_t> mutated = seed;
    size_t at = rng() % mutated.size();
    mutated[at] = static_cast<uint8_t>(rng());
    if (i % 4 == 0) mutated[rng() % mutated.size()] = 0xff;
    run(mutated);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::mt19937_64 rng(0x5eed);
  size_t inputs = 0;
  run({});
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path root(argv[i]);
    if (!std::filesystem::exists(root)) continue;
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(root)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
    } else {
      files.push_back(root);
    }
    for (const auto& file : files) {
      auto seed = read_bytes(file);
      run(seed);
      run_mutations(seed, rng);
      ++inputs;
    }
  }
  // Random inputs as well, so a target without seeds still gets exercised.
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> input(rng() % 512);
    for (auto& b : input)
      b = static_cast<uint8_t>(rng());
    run(input);
  }
  std::printf("replayed %zu seed file(s) with mutations and 2000 random inputs\n", inputs);
  return 0;
}
