// Closure: a move-only `void()` callable, the unit of work the I/O loop queues and its timers hold.
//
// Why not std::function: every message crosses the loop's queues several times (a send is
// deferred, its completion is deferred, a delivery is deferred), and the callables carry a frame
// (about 150 bytes). std::function heap-allocates anything larger than two pointers, and it
// requires a copyable callable, which forced move-only state into shared_ptr boxes. A Closure
// stores a nothrow-movable callable of up to kInlineBytes inside itself, so queueing one allocates
// nothing (the queues are vectors that keep their capacity); larger callables go on the heap, once.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

namespace hivemind::transport {

namespace detail {
template <typename T>
inline constexpr bool kIsStdFunction = false;
template <typename Signature>
inline constexpr bool kIsStdFunction<std::function<Signature>> = true;
}  // namespace detail

// The constructors leave storage_ as raw bytes (a callable is placed into it, or nothing is), and
// the converting constructor is constrained away from Closure itself, so it cannot hide the move
// constructor.
// NOLINTBEGIN(cppcoreguidelines-pro-type-member-init,bugprone-forwarding-reference-overload)
class Closure {
 public:
  // Holds the loop's largest hot-path callable (a deferred send: endpoint, frame and completion)
  // with room to spare; sizeof(Closure) is 192 bytes.
  static constexpr std::size_t kInlineBytes = 176;

  Closure() noexcept = default;
  Closure(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor): as std::function's

  // From any callable invocable as `void()`. An empty std::function or null function pointer
  // gives an empty Closure.
  template <typename F, typename D = std::decay_t<F>>
  requires(!std::is_same_v<D, Closure> && std::is_invocable_v<D&>)
      Closure(F&& f) {  // NOLINT(google-explicit-constructor): lambdas convert, as to std::function
    if constexpr (std::is_pointer_v<D> || detail::kIsStdFunction<D>) {
      if (f == nullptr) return;
    }
    if constexpr (kFitsInline<D>) {
      ::new (static_cast<void*>(storage_)) D(std::forward<F>(f));
      ops_ = &kInlineOps<D>;
    } else {
      ::new (static_cast<void*>(storage_)) D*(new D(std::forward<F>(f)));
      ops_ = &kHeapOps<D>;
    }
  }

  Closure(Closure&& other) noexcept { take(other); }
  Closure& operator=(Closure&& other) noexcept {
    if (this != &other) {
      reset();
      take(other);
    }
    return *this;
  }
  Closure& operator=(std::nullptr_t) noexcept {
    reset();
    return *this;
  }
  Closure(const Closure&) = delete;
  Closure& operator=(const Closure&) = delete;
  ~Closure() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }

  // Runs the callable. Calling an empty Closure is a bug, and aborts.
  void operator()() {
    if (ops_ == nullptr) std::abort();
    ops_->invoke(storage_);
  }

 private:
  struct Ops {
    void (*invoke)(void* storage);
    void (*relocate)(void* from, void* to) noexcept;  // move-construct at `to`, destroy `from`
    void (*destroy)(void* storage) noexcept;
  };

  template <typename D>
  static constexpr bool kFitsInline =
      sizeof(D) <= kInlineBytes &&  // NOLINT(misc-redundant-expression): it differs per D
      alignof(D) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<D>;

  template <typename D>
  static constexpr Ops kInlineOps{
      [](void* s) { (*std::launder(static_cast<D*>(s)))(); },
      [](void* from, void* to) noexcept {
        D* source = std::launder(static_cast<D*>(from));
        ::new (to) D(std::move(*source));
        source->~D();
      },
      [](void* s) noexcept { std::launder(static_cast<D*>(s))->~D(); },
  };

  template <typename D>
  static constexpr Ops kHeapOps{
      [](void* s) { (**std::launder(static_cast<D**>(s)))(); },
      [](void* from, void* to) noexcept { ::new (to) D*(*std::launder(static_cast<D**>(from))); },
      [](void* s) noexcept { delete *std::launder(static_cast<D**>(s)); },
  };

  void take(Closure& other) noexcept {
    if (other.ops_ == nullptr) return;
    other.ops_->relocate(other.storage_, storage_);
    ops_ = std::exchange(other.ops_, nullptr);
  }
  void reset() noexcept {
    if (ops_ == nullptr) return;
    // Cleared first, so that the Closure reads as empty while the callable's destructor runs.
    const Ops* ops = std::exchange(ops_, nullptr);
    ops->destroy(storage_);
  }

  alignas(std::max_align_t) unsigned char storage_[kInlineBytes];
  const Ops* ops_ = nullptr;
};

// NOLINTEND(cppcoreguidelines-pro-type-member-init,bugprone-forwarding-reference-overload)

static_assert(sizeof(Closure) == 192);

}  // namespace hivemind::transport
