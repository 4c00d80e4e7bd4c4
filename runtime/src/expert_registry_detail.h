// Between the registry (expert_registry.cc) and the zoo (experts.cc).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <hivemind/runtime/expert_registry.h>

namespace hivemind::runtime::detail {

// The zoo's classes in their listed order (experts.cc); the registry registers them on its first
// use, through the same checks as register_expert_class.
std::vector<std::pair<std::string, ExpertFactory>> zoo_expert_classes();

// The factory registered under `name`, or an empty function.
ExpertFactory find_expert_factory(std::string_view name);

}  // namespace hivemind::runtime::detail
