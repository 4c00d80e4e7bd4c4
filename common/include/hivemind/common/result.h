// Result<T>: a value or an error Status (std::expected arrives only in C++23).
#pragma once

#include <cassert>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

#include <hivemind/common/status.h>

namespace hivemind {

template <typename T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::decay_t<T>, Status>, "Result<Status> makes no sense");

 public:
  // Implicit on purpose: `return value;` and `return some_error(...);` both read naturally.
  Result(T value) : storage_(std::in_place_index<0>, std::move(value)) {}        // NOLINT
  Result(Status status) : storage_(std::in_place_index<1>, std::move(status)) {  // NOLINT
    assert(!std::get<1>(storage_).is_ok() && "a Result built from a Status must hold an error");
  }

  bool is_ok() const { return storage_.index() == 0; }
  explicit operator bool() const { return is_ok(); }

  // The error; Status::ok() when a value is held.
  Status status() const { return is_ok() ? Status::ok() : std::get<1>(storage_); }

  T& value() & { return checked(); }
  const T& value() const& { return const_cast<Result*>(this)->checked(); }
  T&& value() && { return std::move(checked()); }

  T* operator->() { return &checked(); }
  const T* operator->() const { return &const_cast<Result*>(this)->checked(); }
  T& operator*() & { return checked(); }
  const T& operator*() const& { return const_cast<Result*>(this)->checked(); }

  // The value, or throws std::runtime_error carrying the error. For public API edges only.
  T value_or_throw() && {
    if (!is_ok()) std::get<1>(storage_).throw_if_error();
    return std::move(std::get<0>(storage_));
  }

 private:
  T& checked() {
    if (!is_ok()) {
      throw std::logic_error("Result::value() on an error: " + std::get<1>(storage_).to_string());
    }
    return std::get<0>(storage_);
  }

  std::variant<T, Status> storage_;
};

}  // namespace hivemind

// Assigns the value of a Result expression to `lhs`, or returns its error to the caller.
// `tmp` is a generated name and `lhs` may be a declaration ("auto x"), so neither can be
// parenthesized: hence the NOLINT.
#define HIVEMIND_CONCAT_INNER_(a, b) a##b
#define HIVEMIND_CONCAT_(a, b) HIVEMIND_CONCAT_INNER_(a, b)
#define HIVEMIND_ASSIGN_OR_RETURN(lhs, expr) \
  HIVEMIND_ASSIGN_OR_RETURN_IMPL_(HIVEMIND_CONCAT_(hivemind_result_, __LINE__), lhs, expr)
// NOLINTBEGIN(bugprone-macro-parentheses)
#define HIVEMIND_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  if (!tmp.is_ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)
