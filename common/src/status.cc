#include <cstring>
#include <stdexcept>

#include <hivemind/common/errno_text.h>
#include <hivemind/common/status.h>

namespace hivemind {

std::string_view status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "Ok";
    case StatusCode::kTimeout:
      return "Timeout";
    case StatusCode::kCanceled:
      return "Canceled";
    case StatusCode::kPeerClosed:
      return "PeerClosed";
    case StatusCode::kProtocol:
      return "Protocol";
    case StatusCode::kTooLarge:
      return "TooLarge";
    case StatusCode::kNoMemory:
      return "NoMemory";
    case StatusCode::kUnsupported:
      return "Unsupported";
    case StatusCode::kInvalidArgument:
      return "InvalidArgument";
    case StatusCode::kNotFound:
      return "NotFound";
    case StatusCode::kUnavailable:
      return "Unavailable";
    case StatusCode::kInternal:
      return "Internal";
    case StatusCode::kIoError:
      return "IoError";
  }
  return "Unknown";
}

Status::Status(StatusCode code, std::string message) {
  // An "error" with code Ok would be indistinguishable from success; keep Ok allocation-free.
  if (code != StatusCode::kOk) {
    state_ = std::make_shared<const State>(State{code, std::move(message)});
  }
}

const std::string& Status::message() const {
  static const std::string empty;
  return state_ ? state_->message : empty;
}

std::string Status::to_string() const {
  if (is_ok()) return "Ok";
  std::string text(status_code_name(state_->code));
  if (!state_->message.empty()) {
    text += ": ";
    text += state_->message;
  }
  return text;
}

Status Status::with_context(std::string_view context) const {
  if (is_ok()) return *this;
  std::string message(context);
  message += ": ";
  message += state_->message;
  return Status(state_->code, std::move(message));
}

void Status::throw_if_error() const {
  if (!is_ok()) throw StatusError(*this);
}

Status timeout_error(std::string m) {
  return {StatusCode::kTimeout, std::move(m)};
}
Status canceled_error(std::string m) {
  return {StatusCode::kCanceled, std::move(m)};
}
Status peer_closed_error(std::string m) {
  return {StatusCode::kPeerClosed, std::move(m)};
}
Status protocol_error(std::string m) {
  return {StatusCode::kProtocol, std::move(m)};
}
Status too_large_error(std::string m) {
  return {StatusCode::kTooLarge, std::move(m)};
}
Status no_memory_error(std::string m) {
  return {StatusCode::kNoMemory, std::move(m)};
}
Status unsupported_error(std::string m) {
  return {StatusCode::kUnsupported, std::move(m)};
}
Status invalid_argument_error(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
Status not_found_error(std::string m) {
  return {StatusCode::kNotFound, std::move(m)};
}
Status unavailable_error(std::string m) {
  return {StatusCode::kUnavailable, std::move(m)};
}
Status internal_error(std::string m) {
  return {StatusCode::kInternal, std::move(m)};
}

Status errno_error(std::string_view what, int err) {
  std::string message(what);
  message += ": ";
  message += errno_text(err);
  return {StatusCode::kIoError, std::move(message)};
}

}  // namespace hivemind
