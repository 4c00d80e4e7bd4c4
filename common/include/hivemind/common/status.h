// Status and Result<T>: the error vocabulary of the data path.
//
// Nothing on the data path throws across threads or callbacks; operations complete with a Status
// (or a Result<T> holding a value or a Status). Public trainer-facing APIs turn errors into
// exceptions at their edge (see Status::throw_if_error), torch style.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace hivemind {

enum class StatusCode : uint8_t {
  kOk = 0,
  kTimeout,          // a deadline passed
  kCanceled,         // the caller or a shutdown canceled the operation
  kPeerClosed,       // the remote end went away (reset, EOF, process died)
  kProtocol,         // malformed or unexpected bytes from the network
  kTooLarge,         // a configured limit was exceeded
  kNoMemory,         // an allocation failed or a pool is exhausted
  kUnsupported,      // the operation is not available in this build or on this peer
  kInvalidArgument,  // the caller passed something wrong (bad flag, bad shape, bad uid)
  kNotFound,         // a key, method, expert or file does not exist
  kUnavailable,      // temporarily cannot serve (draining, overloaded, not connected yet)
  kInternal,         // a bug or an unexpected failure of a dependency
  kIoError,          // an operating-system call failed
};

std::string_view status_code_name(StatusCode code);

// A cheap-to-copy success-or-error value. Ok carries no allocation; an error shares its message.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message);

  static Status ok() { return {}; }

  bool is_ok() const { return state_ == nullptr; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return state_ ? state_->code : StatusCode::kOk; }
  const std::string& message() const;

  // "Timeout: rpc 'forward' to tcp://10.0.0.2:4000 exceeded its 2000 ms deadline"
  std::string to_string() const;

  // Returns a copy whose message is prefixed with `context: `, for errors crossing a layer.
  Status with_context(std::string_view context) const;

  // Throws StatusError (a std::runtime_error whose what() is to_string()) when not ok. For public
  // API edges only.
  void throw_if_error() const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code() == b.code() && a.message() == b.message();
  }

 private:
  struct State {
    StatusCode code;
    std::string message;
  };
  std::shared_ptr<const State> state_;
};

// The exception public API edges throw for a Status: catch it as std::runtime_error, or as this to
// tell a timeout from a refusal (the Python package maps the code onto its exception classes).
class StatusError : public std::runtime_error {
 public:
  explicit StatusError(Status status)
      : std::runtime_error(status.to_string()), status_(std::move(status)) {}
  const Status& status() const { return status_; }
  StatusCode code() const { return status_.code(); }

 private:
  Status status_;
};

// Shorthands that read well at the call site: `return timeout_error("deadline passed");`
Status timeout_error(std::string message);
Status canceled_error(std::string message);
Status peer_closed_error(std::string message);
Status protocol_error(std::string message);
Status too_large_error(std::string message);
Status no_memory_error(std::string message);
Status unsupported_error(std::string message);
Status invalid_argument_error(std::string message);
Status not_found_error(std::string message);
Status unavailable_error(std::string message);
Status internal_error(std::string message);
// Builds an kIoError from errno with the failing call's name: "connect: Connection refused".
Status errno_error(std::string_view what, int err);

}  // namespace hivemind

// Propagates a non-ok Status from an expression to the caller.
#define HIVEMIND_RETURN_IF_ERROR(expr)                      \
  do {                                                      \
    ::hivemind::Status hivemind_status_ = (expr);           \
    if (!hivemind_status_.is_ok()) return hivemind_status_; \
  } while (false)
