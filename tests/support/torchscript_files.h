// TorchScript expert files for the runtime and server tests: a per-test temporary directory, a
// module written by Python (Debian's python3-torch) and modules scripted from C++.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/types.h>
#include <unistd.h>

#include <hivemind/runtime/torchscript_expert.h>

namespace hivemind::test_experts {

// A directory of its own for the running test, removed with this object.
class TestTempDir {
 public:
  TestTempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("hm_{}_{}_{}", info->test_suite_name(), info->name(), ::getpid());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TestTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TestTempDir(const TestTempDir&) = delete;
  TestTempDir& operator=(const TestTempDir&) = delete;

  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline constexpr const char* kPython = "/usr/bin/python3";

// Why Python cannot write a module here (no interpreter, or it cannot import torch), or "" when it
// can.
inline std::string python_torch_unavailable() {
  static const std::string reason = [] {
    if (::access(kPython, X_OK) != 0) return fmt::format("{} is not installed", kPython);
    const std::string command = fmt::format("{} -c 'import torch' >/dev/null 2>&1", kPython);
    if (std::system(command.c_str()) != 0)
      return fmt::format("{} cannot import torch (Debian: apt-get install python3-torch)", kPython);
    return std::string();
  }();
  return reason;
}

// A user's expert as Python writes it: an nn.Module with submodules (so its parameter names have
// dots: fc1.weight, ..., norm.bias), torch.jit.script'ed and saved with hivemind_expert.json.
//   y = LayerNorm(x + fc2(relu(fc1(x))))    fc1: Linear(h, 2h), fc2: Linear(2h, h)
// Returns "" or what went wrong.
inline std::string write_python_expert(const std::filesystem::path& file, int64_t hidden_dim) {
  const std::filesystem::path script = file.parent_path() / "write_expert.py";
  std::ofstream(script) << R"(import json, sys
import torch

class Expert(torch.nn.Module):
    def __init__(self, hidden_dim: int):
        super().__init__()
        self.fc1 = torch.nn.Linear(hidden_dim, 2 * hidden_dim)
        self.fc2 = torch.nn.Linear(2 * hidden_dim, hidden_dim)
        self.norm = torch.nn.LayerNorm(hidden_dim)

    def forward(self, x):
        return self.norm(x + self.fc2(torch.relu(self.fc1(x))))

path, hidden_dim = sys.argv[1], int(sys.argv[2])
torch.manual_seed(1)
module = torch.jit.script(Expert(hidden_dim))
meta = {"format": 1, "inputs": [{"shape": [hidden_dim], "dtype": "float32"}]}
torch.jit.save(module, path, _extra_files={"hivemind_expert.json": json.dumps(meta)})
)";
  const std::string command =
      fmt::format("{} '{}' '{}' {} 2>&1", kPython, script.string(), file.string(), hidden_dim);
  const int code = std::system(command.c_str());
  if (code != 0) return fmt::format("'{}' exited with status {}", command, code);
  return std::string();
}

// A module scripted from C++ around `forward_source` (a TorchScript `def forward(self, ...)`),
// with a weight w [h, h] and a bias b [h] drawn from `seed`.
inline torch::jit::Module scripted_module(const std::string& forward_source, int64_t hidden_dim,
                                          uint64_t seed = 3) {
  torch::jit::Module module("test_module");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  module.register_parameter("w", torch::randn({hidden_dim, hidden_dim}, gen).requires_grad_(true),
                            false);
  module.register_parameter("b", torch::randn({hidden_dim}, gen).requires_grad_(true), false);
  if (!forward_source.empty()) module.define(forward_source);
  return module;
}

}  // namespace hivemind::test_experts
