#include "ucx/ucx_endpoint_registry.h"

#include "ucx/ucx_endpoint.h"

namespace hivemind::transport {

void UcxEndpointRegistry::add(ucp_ep_h handle, std::shared_ptr<UcxEndpoint> endpoint) {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  Entry& entry = entries_[handle];
  entry.registry = this;
  entry.handle = handle;
  entry.endpoint = std::move(endpoint);
}

UcxEndpointRegistry::Entry* UcxEndpointRegistry::find(ucp_ep_h handle) {
  auto it = entries_.find(handle);
  return it == entries_.end() ? nullptr : &it->second;
}

UcxEndpoint* UcxEndpointRegistry::find_open(ucp_ep_h handle) const {
  auto it = entries_.find(handle);
  if (it == entries_.end() || it->second.state != UcxEndpointState::kOpen) return nullptr;
  return it->second.endpoint.get();
}

std::vector<std::shared_ptr<UcxEndpoint>> UcxEndpointRegistry::open_endpoints() const {
  std::vector<std::shared_ptr<UcxEndpoint>> open;
  for (const auto& [handle, entry] : entries_) {
    if (entry.state == UcxEndpointState::kOpen) open.push_back(entry.endpoint);
  }
  return open;
}

bool UcxEndpointRegistry::closing_any() const {
  for (const auto& [handle, entry] : entries_) {
    if (entry.state == UcxEndpointState::kFlushing || entry.state == UcxEndpointState::kClosing)
      return true;
  }
  return false;
}

void UcxEndpointRegistry::close(ucp_ep_h handle, UcxCloseMode mode) {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  Entry* entry = find(handle);
  if (entry == nullptr || entry->state != UcxEndpointState::kOpen) return;
  entry->state =
      mode == UcxCloseMode::kGraceful ? UcxEndpointState::kFlushing : UcxEndpointState::kClosing;
  // Not from inside a UCX callback (an endpoint usually fails in one): start on the next loop turn.
  // UCX then completes the pending send and receive requests (with an error), which completes their
  // callbacks exactly once. The entry stays until the close is done, so the lookup cannot miss.
  worker_.defer([this, handle] {
    if (Entry* pending = find(handle)) start_close(*pending);
  });
}

void UcxEndpointRegistry::start_close(Entry& entry) {
  if (entry.state == UcxEndpointState::kFlushing)
    start_flush(entry);
  else if (entry.state == UcxEndpointState::kClosing && entry.close_request == nullptr)
    issue_close(entry, entry.force_close);
}

void UcxEndpointRegistry::start_flush(Entry& entry) {
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.send = flush_done_cb;
  param.user_data = &entry;
  void* request = ucp_ep_flush_nbx(entry.handle, &param);
  if (request == nullptr || UCS_PTR_IS_ERR(request)) {
    flush_done(entry, request == nullptr ? UCS_OK : UCS_PTR_STATUS(request));
    return;
  }
  entry.flush_request = request;
}

void UcxEndpointRegistry::flush_done_cb(void* request, ucs_status_t status, void* user_data) {
  auto& entry = *static_cast<Entry*>(user_data);
  ucp_request_free(request);
  entry.flush_request = nullptr;
  entry.registry->flush_done(entry, status);
}

void UcxEndpointRegistry::flush_done(Entry& entry, ucs_status_t status) {
  if (entry.state != UcxEndpointState::kFlushing) {
    erase_if_done(entry);  // abandoned at shutdown and force-closed already
    return;
  }
  // Usually inside UCX: the flush's completion callback, which UCX also runs while it discards
  // the endpoint's lanes after the peer went away. Closing the handle there destroys it under
  // UCX, which then reads the freed endpoint (UCX 1.18 crashed so when a client closed while the
  // server's graceful close still waited for wireup). Close on the next loop turn instead.
  entry.state = UcxEndpointState::kClosing;
  entry.force_close = status != UCS_OK;
  worker_.defer([this, handle = entry.handle] {
    if (Entry* pending = find(handle)) start_close(*pending);
  });
}

void UcxEndpointRegistry::issue_close(Entry& entry, bool force) {
  entry.state = UcxEndpointState::kClosing;
  ucp_request_param_t param{};
  param.op_attr_mask =
      UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  param.cb.send = close_done_cb;
  param.user_data = &entry;
  void* request = ucp_ep_close_nbx(entry.handle, &param);
  if (request == nullptr || UCS_PTR_IS_ERR(request)) {
    close_done(entry);
    return;
  }
  entry.close_request = request;
}

void UcxEndpointRegistry::close_done_cb(void* request, ucs_status_t, void* user_data) {
  auto& entry = *static_cast<Entry*>(user_data);
  ucp_request_free(request);
  entry.close_request = nullptr;
  entry.registry->close_done(entry);
}

void UcxEndpointRegistry::close_done(Entry& entry) {
  entry.state = UcxEndpointState::kClosed;
  erase_if_done(entry);
}

void UcxEndpointRegistry::erase_if_done(Entry& entry) {
  if (entry.state != UcxEndpointState::kClosed || entry.flush_request != nullptr ||
      entry.close_request != nullptr) {
    return;
  }
  entries_.erase(entry.handle);  // drops the registry's reference to the endpoint
}

void UcxEndpointRegistry::abandon_flushes(ucp_worker_h worker, SteadyClock::duration limit) {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  // Handles first: progressing UCX below may complete a flush and erase its entry.
  std::vector<ucp_ep_h> stuck;
  for (const auto& [handle, entry] : entries_) {
    if (entry.state == UcxEndpointState::kFlushing && entry.flush_request != nullptr)
      stuck.push_back(handle);
  }
  for (ucp_ep_h handle : stuck) {
    Entry* entry = find(handle);
    if (entry == nullptr || entry->state != UcxEndpointState::kFlushing) continue;
    entry->state = UcxEndpointState::kClosed;  // its flush callback, when it comes, only erases
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* request = ucp_ep_close_nbx(handle, &param);
    if (request != nullptr && !UCS_PTR_IS_ERR(request)) {
      auto until = SteadyClock::now() + limit;
      while (ucp_request_check_status(request) == UCS_INPROGRESS && SteadyClock::now() < until)
        ucp_worker_progress(worker);
      ucp_request_free(request);
    }
    if ((entry = find(handle)) != nullptr) erase_if_done(*entry);
  }
}

void UcxEndpointRegistry::drop_close_requests() {
  HIVEMIND_ASSERT_IN_LOOP(worker_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& entry = it->second;
    if (entry.close_request != nullptr) {
      ucp_request_free(entry.close_request);
      entry.close_request = nullptr;
      entry.state = UcxEndpointState::kClosed;
    }
    if (entry.state == UcxEndpointState::kClosed && entry.flush_request == nullptr)
      it = entries_.erase(it);
    else
      ++it;
  }
}

}  // namespace hivemind::transport
