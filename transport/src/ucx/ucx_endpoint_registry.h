// The one owner of a UCX worker's endpoints (private): every ucp_ep_h from ucp_ep_create until UCX
// has finished closing it, with its state and the flush or close request in flight.
//
// UCX calls back into an endpoint from active messages, error handlers and request completions, and
// a close is not one call but up to two asynchronous requests (a flush, then the close). Keeping
// the endpoint, its state and those requests in one entry means a late message finds a closing
// handle and is dropped, a request's user_data always points at live memory, and the endpoint
// object outlives everything UCX may still do with its handle.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include <ucp/api/ucp.h>

#include <hivemind/common/clock.h>

#include "worker_impl.h"

namespace hivemind::transport {

class UcxEndpoint;

enum class UcxEndpointState : uint8_t {
  kOpen,      // in use: active messages and peer errors for the handle reach its endpoint
  kFlushing,  // closed locally; waiting for ucp_ep_flush_nbx (done once wireup is) before closing
  kClosing,   // ucp_ep_close_nbx issued or about to be; waiting for UCX to finish it
  kClosed,  // UCX is done with the handle (kept only while an abandoned flush may still call back)
};

enum class UcxCloseMode : uint8_t {
  kGraceful,  // flush, then close: the peer sees a clean disconnect
  kForce,     // close at once (a failed endpoint): pending requests complete with an error
};

class UcxEndpointRegistry {
 public:
  explicit UcxEndpointRegistry(Worker::Impl& worker) : worker_(worker) {}
  UcxEndpointRegistry(const UcxEndpointRegistry&) = delete;
  UcxEndpointRegistry& operator=(const UcxEndpointRegistry&) = delete;

  // I/O thread only, like every method: a newly created handle, open.
  void add(ucp_ep_h handle, std::shared_ptr<UcxEndpoint> endpoint);

  // The endpoint of an open handle; null once it began closing, so late active messages and errors
  // for it are dropped.
  UcxEndpoint* find_open(ucp_ep_h handle) const;
  std::vector<std::shared_ptr<UcxEndpoint>> open_endpoints() const;
  // Whether some handle is still flushing or closing.
  bool closing_any() const;

  // Takes an open handle out of use now and starts closing it on the next loop turn, never from
  // inside a UCX callback. A graceful close flushes first: closing an endpoint whose sockaddr
  // wireup is still running crashes UCX 1.13 later, on its async thread, when the peer disconnects,
  // and a flush completes only once wireup is done. A flush that fails closes by force.
  void close(ucp_ep_h handle, UcxCloseMode mode);

  // Shutdown: force-closes the handles whose flush never finished (a frozen peer), progressing
  // `worker` for at most `limit` each. UCX then completes the flush with an error, which must not
  // close the handle a second time.
  void abandon_flushes(ucp_worker_h worker, SteadyClock::duration limit);
  // Shutdown: releases the close requests UCX has not finished (no callback fires for a released
  // request) and forgets their handles, which die with the worker.
  void drop_close_requests();

 private:
  struct Entry {
    UcxEndpointRegistry* registry = nullptr;  // the requests' user_data is the entry itself
    ucp_ep_h handle = nullptr;
    std::shared_ptr<UcxEndpoint> endpoint;
    UcxEndpointState state = UcxEndpointState::kOpen;
    void* flush_request = nullptr;  // in flight, owned by UCX until its callback frees it
    void* close_request = nullptr;
    bool force_close = true;  // how a kClosing entry closes: false after a successful flush
  };

  static void flush_done_cb(void* request, ucs_status_t status, void* user_data);
  static void close_done_cb(void* request, ucs_status_t status, void* user_data);

  Entry* find(ucp_ep_h handle);
  void start_close(Entry& entry);
  void start_flush(Entry& entry);
  void issue_close(Entry& entry, bool force);
  void flush_done(Entry& entry, ucs_status_t status);
  void close_done(Entry& entry);
  // Erases a closed entry once no request refers to it (its address is their user_data).
  void erase_if_done(Entry& entry);

  Worker::Impl& worker_;
  // Node-based: an entry's address is stable until it is erased, which erase_if_done only does once
  // UCX holds no request pointing at it.
  std::unordered_map<ucp_ep_h, Entry> entries_;
};

}  // namespace hivemind::transport
