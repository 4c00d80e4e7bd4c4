// The expert classes this process can build by name: the zoo's (ffn, ffn_v08, transformer, nop,
// torchscript) and any class a C++ program registers, so that its own ExpertModule is hosted by
// server::Server::create (ServerOptions::expert_cls) and rebuilt by make_expert like the zoo's.
//
//   runtime::register_expert_class("scaled_linear", [](const runtime::ExpertConfig& c) {
//     return std::shared_ptr<runtime::ExpertModule>(std::make_shared<ScaledLinear>(c.hidden_dim));
//   });
//
// A factory builds the module on the CPU with any weights; make_expert then re-initializes every
// parameter from expert_seed(base_seed, uid) (experts.h: ExpertModule::initialize_parameters), so
// the same (seed, uid) gives the same weights on every host for a registered class too. The
// module's expert_cls() must be the registered name (checkpoints record it). Register before the
// registry is read for the name — before parse_command_line or Server::create — typically at the
// top of main(). Classes cannot be unregistered or replaced. docs/experts.md has a complete
// example.
//
// The registry is process-wide and thread-safe; the zoo's classes are registered on its first use
// (a function-local static, so registering from another translation unit's static initializer is
// safe too).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <hivemind/common/result.h>
#include <hivemind/common/status.h>

namespace hivemind::runtime {

class ExpertModule;   // experts.h
struct ExpertConfig;  // experts.h

// Builds one expert of a class from the server's options (hidden_dim, seq_len). It may return an
// error (InvalidArgument for a dimension it cannot take) or throw; make_expert reports both. A
// lambda returns std::shared_ptr<ExpertModule> (or Result of it), not a pointer to the subclass:
// Result does not convert from std::shared_ptr<Subclass>.
using ExpertFactory = std::function<Result<std::shared_ptr<ExpertModule>>(const ExpertConfig&)>;

// A class name is a uid name (common/expert_uid.h: printable ASCII without spaces, dots, slashes,
// backslashes or quotes) of at most this many bytes, the expert info decoder's limit.
inline constexpr size_t kMaxExpertClassBytes = 64;

// Adds a class. InvalidArgument, naming the class, for an empty or malformed name, an empty
// factory, or a name already registered (a zoo class included): nothing is ever replaced.
Status register_expert_class(std::string name, ExpertFactory factory);

// Every registered name: the zoo's first ("ffn", "ffn_v08", "transformer", "nop", "torchscript"),
// then the others in registration order.
std::vector<std::string> expert_classes();

bool is_expert_class(std::string_view name);

}  // namespace hivemind::runtime
