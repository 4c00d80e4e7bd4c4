#include <algorithm>
#include <mutex>
#include <utility>

#include <fmt/format.h>

#include <hivemind/common/expert_uid.h>
#include <hivemind/protocol/expert_rpc.h>
#include <hivemind/runtime/expert_registry.h>

#include "expert_registry_detail.h"

namespace hivemind::runtime {

namespace {

// A trainer's info decoder refuses a longer class name.
static_assert(kMaxExpertClassBytes <= protocol::Limits{}.max_cls_bytes);

class Registry {
 public:
  Registry() {
    for (auto& [name, factory] : detail::zoo_expert_classes()) {
      add(std::move(name), std::move(factory)).throw_if_error();  // only a zoo bug throws
    }
  }

  Status add(std::string name, ExpertFactory factory) {
    if (name.empty())
      return invalid_argument_error("register_expert_class: the class name is empty");
    if (name.size() > kMaxExpertClassBytes || !is_valid_uid_name(name)) {
      return invalid_argument_error(fmt::format(
          "register_expert_class: '{}' is not a valid expert class name (printable ASCII without "
          "spaces, dots, slashes, backslashes or quotes, at most {} bytes)",
          name, kMaxExpertClassBytes));
    }
    if (!factory) {
      return invalid_argument_error(
          fmt::format("register_expert_class: the factory of '{}' is empty", name));
    }
    std::lock_guard lock(mutex_);
    if (find_locked(name) != classes_.end()) {
      return invalid_argument_error(fmt::format(
          "register_expert_class: expert class '{}' is already registered (a class cannot be "
          "replaced; choose another name)",
          name));
    }
    classes_.emplace_back(std::move(name), std::move(factory));
    return Status::ok();
  }

  ExpertFactory find(std::string_view name) const {
    std::lock_guard lock(mutex_);
    auto it = find_locked(name);
    return it == classes_.end() ? ExpertFactory() : it->second;
  }

  bool contains(std::string_view name) const {
    std::lock_guard lock(mutex_);
    return find_locked(name) != classes_.end();
  }

  std::vector<std::string> names() const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    out.reserve(classes_.size());
    for (const auto& entry : classes_)
      out.push_back(entry.first);
    return out;
  }

 private:
  using Entries = std::vector<std::pair<std::string, ExpertFactory>>;

  Entries::const_iterator find_locked(std::string_view name) const {
    return std::find_if(classes_.begin(), classes_.end(),
                        [&](const auto& entry) { return entry.first == name; });
  }

  mutable std::mutex mutex_;
  Entries classes_;  // registration order, the zoo's first
};

// Never destroyed: a server's threads or another static's destructor may still build an expert
// while the process exits.
Registry& registry() {
  static Registry* const instance = new Registry();
  return *instance;
}

}  // namespace

Status register_expert_class(std::string name, ExpertFactory factory) {
  return registry().add(std::move(name), std::move(factory));
}

std::vector<std::string> expert_classes() {
  return registry().names();
}

bool is_expert_class(std::string_view name) {
  return registry().contains(name);
}

namespace detail {

ExpertFactory find_expert_factory(std::string_view name) {
  return registry().find(name);
}

}  // namespace detail

}  // namespace hivemind::runtime
