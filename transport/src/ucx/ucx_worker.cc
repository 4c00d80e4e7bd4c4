// UCX context, worker, listener and connection setup.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iterator>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/epoll.h>

#include <hivemind/common/logging.h>
#include <hivemind/common/text.h>

#include "ipv4_resolution.h"
#include "ucx/ucx_endpoint.h"
#include "ucx/ucx_worker_impl.h"

namespace hivemind::transport {

namespace detail {

namespace {

// Whether UCX_TLS (from ucx_config, else the environment) lets posix or sysv in; setting their
// options when they are not loaded makes UCX warn about an unused setting.
bool tls_may_include_shared_memory(const ContextOptions& options) {
  std::string tls;
  if (const char* env = std::getenv("UCX_TLS")) tls = env;
  for (const auto& [name, value] : options.ucx_config) {
    if (name == "TLS") tls = value;
  }
  if (tls.empty() || tls[0] == '^') return true;  // everything, or everything but a few
  for (const std::string& name : split_list(tls)) {
    if (name == "all" || name == "sm" || name == "shm" || name == "mm" || name == "posix" ||
        name == "sysv")
      return true;
  }
  return false;
}

}  // namespace

bool ucx_shared_memory_with_error_handling_is_safe() {
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  return major > 1 || (major == 1 && minor >= 14);
}

Result<std::shared_ptr<UcxContext>> create_ucx_context(const ContextOptions& options) {
  // UCX 1.13 aborts (assertion in proto_reconfig.c during wireup) when its new protocols are
  // enabled on client-server endpoints; the same happens with its own ucp_client_server example.
  // Refuse that combination so auto:// falls back to TCP instead of the process dying. 1.14+ is
  // fine.
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  if (major == 1 && minor < 14) {
    std::string proto;
    if (const char* env = std::getenv("UCX_PROTO_ENABLE")) proto = env;
    for (const auto& [name, value] : options.ucx_config) {
      if (name == "PROTO_ENABLE") proto = value;
    }
    if (proto == "y" || proto == "yes" || proto == "on" || proto == "1") {
      return unsupported_error(fmt::format(
          "UCX {}.{}.{} aborts with PROTO_ENABLE=y on client-server endpoints; use UCX >= 1.14 or "
          "PROTO_ENABLE=n",
          major, minor, release));
    }
  }
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) return ucs_to_status(st, "ucp_config_read");
  // Our endpoints ask for peer-failure handling (a dead peer must fail its calls), and UCX leaves
  // the shared-memory transports (posix, sysv) out of such endpoints unless their peer-failure
  // support is on (UCX_MM_ERROR_HANDLING, off by default): same-host traffic then goes over tcp/lo.
  // We turn it on only from UCX 1.14: 1.13 aborts when requests queued during wireup are replayed
  // on the shared-memory lane ("Invalid am_short_iov length ... Assertion `max_iov > 1' failed",
  // reproduced by RpcTest.ThousandConcurrentCalls... over sysv). Users of 1.13 may still set it
  // themselves.
  static constexpr const char* kShmErrorHandling[] = {"MM_ERROR_HANDLING", "POSIX_ERROR_HANDLING",
                                                      "SYSV_ERROR_HANDLING"};
  const bool user_decided =
      std::any_of(std::begin(kShmErrorHandling), std::end(kShmErrorHandling), [&](const char* key) {
        return std::getenv(fmt::format("UCX_{}", key).c_str()) != nullptr ||
               std::any_of(options.ucx_config.begin(), options.ucx_config.end(),
                           [&](const auto& kv) { return kv.first == key; });
      });
  if (!user_decided && ucx_shared_memory_with_error_handling_is_safe() &&
      tls_may_include_shared_memory(options)) {
    (void)ucp_config_modify(config, "MM_ERROR_HANDLING", "y");
  }
  for (const auto& [name, value] : options.ucx_config) {
    st = ucp_config_modify(config, name.c_str(), value.c_str());
    if (st != UCS_OK) {
      ucp_config_release(config);
      return invalid_argument_error(
          fmt::format("UCX setting {}={}: {}", name, value, ucs_status_string(st)));
    }
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  auto ctx = std::make_shared<UcxContext>();
  st = ucp_init(&params, config, &ctx->handle);
  ucp_config_release(config);
  if (st != UCS_OK) {
    ctx->handle = nullptr;
    return ucs_to_status(st, "ucp_init");
  }
  ucp_context_attr_t attr{};
  attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  if (ucp_context_query(ctx->handle, &attr) == UCS_OK) ctx->memory_types = attr.memory_types;
  return ctx;
}

std::string ucx_version() {
  unsigned major = 0, minor = 0, release = 0;
  ucp_get_version(&major, &minor, &release);
  return fmt::format("{}.{}.{}", major, minor, release);
}

bool ucx_supports(const UcxContext* context, MemoryType type) {
  if (context == nullptr) return false;
  ucs_memory_type_t t = type == MemoryType::kCuda ? UCS_MEMORY_TYPE_CUDA : UCS_MEMORY_TYPE_HOST;
  return (context->memory_types & UCS_BIT(t)) != 0;
}

}  // namespace detail

Status ucs_to_status(ucs_status_t status, const std::string& what) {
  std::string msg = fmt::format("{}: {}", what, ucs_status_string(status));
  switch (status) {
    case UCS_OK:
      return Status::ok();
    case UCS_ERR_CANCELED:
      return canceled_error(msg);
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_NOT_CONNECTED:
      return peer_closed_error(msg);
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_REJECTED:
    case UCS_ERR_BUSY:
      return unavailable_error(msg);
    case UCS_ERR_NO_MEMORY:
      return no_memory_error(msg);
    case UCS_ERR_TIMED_OUT:
      return timeout_error(msg);
    case UCS_ERR_UNSUPPORTED:
      return unsupported_error(msg);
    case UCS_ERR_INVALID_PARAM:
      return invalid_argument_error(msg);
    case UCS_ERR_MESSAGE_TRUNCATED:
      return protocol_error(msg);
    default:
      return internal_error(msg);
  }
}

namespace {

ucs_status_t frame_am_cb(void* arg, const void* header, size_t header_length, void* data,
                         size_t length, const ucp_am_recv_param_t* param) {
  return static_cast<UcxWorkerImpl*>(arg)->dispatch_am(kAmFrame, header, header_length, data,
                                                       length, param);
}

ucs_status_t metadata_am_cb(void* arg, const void* header, size_t header_length, void* data,
                            size_t length, const ucp_am_recv_param_t* param) {
  return static_cast<UcxWorkerImpl*>(arg)->dispatch_am(kAmMetadata, header, header_length, data,
                                                       length, param);
}

template <unsigned kId>
ucs_status_t same_host_am_cb(void* arg, const void* header, size_t header_length, void* data,
                             size_t length, const ucp_am_recv_param_t* param) {
  return static_cast<UcxWorkerImpl*>(arg)->dispatch_am(kId, header, header_length, data, length,
                                                       param);
}

void ep_error_cb(void* arg, ucp_ep_h ep, ucs_status_t status) {
  static_cast<UcxWorkerImpl*>(arg)->on_ep_error(ep, status);
}

class UcxListener final : public ListenerBase {
 public:
  UcxListener(Worker::Impl& worker, UcxWorkerImpl& ucx, AcceptCallback on_accept)
      : ListenerBase(worker), ucx_(ucx), on_accept_(std::move(on_accept)) {}

  static void conn_cb(ucp_conn_request_h request, void* arg) {
    static_cast<UcxListener*>(arg)->on_conn_request(request);
  }

  Status start(const Address& bound) {
    HIVEMIND_ASSIGN_OR_RETURN(sockaddr_in sin, detail::resolve_ipv4(bound));
    ucp_listener_params_t params{};
    params.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
    params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&sin);
    params.sockaddr.addrlen = sizeof(sin);
    params.conn_handler.cb = &UcxListener::conn_cb;
    params.conn_handler.arg = this;
    ucs_status_t st = ucp_listener_create(ucx_.handle(), &params, &listener_);
    if (st != UCS_OK) {
      listener_ = nullptr;
      return ucs_to_status(st, "ucp_listener_create on " + bound.to_string());
    }
    ucp_listener_attr_t attr{};
    attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
    st = ucp_listener_query(listener_, &attr);
    if (st != UCS_OK) return ucs_to_status(st, "ucp_listener_query");
    uint16_t port = ntohs(reinterpret_cast<const sockaddr_in*>(&attr.sockaddr)->sin_port);
    HIVEMIND_ASSIGN_OR_RETURN(std::string host,
                              announce_host(bound.host, worker_.context->options().iface));
    address_ = fmt::format("ucx://{}:{}", host, port);
    return Status::ok();
  }

  ~UcxListener() override { destroy(); }

 private:
  void on_conn_request(ucp_conn_request_h request) {
    std::string peer = "ucx://peer";
    ucp_conn_request_attr_t attr{};
    attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
    if (ucp_conn_request_query(request, &attr) == UCS_OK &&
        attr.client_address.ss_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(&attr.client_address);
      char text[INET_ADDRSTRLEN];
      ::inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
      peer = fmt::format("ucx://{}:{}", text, ntohs(sin->sin_port));
    }
    auto ep = ucx_.create_endpoint(peer, [request](ucp_ep_params_t& p) {
      p.field_mask |= UCP_EP_PARAM_FIELD_CONN_REQUEST;
      p.conn_request = request;
    });
    if (!ep.is_ok()) {
      logger("transport")
          ->warn("accepting a UCX connection from {} failed: {}", peer, ep.status().to_string());
      return;
    }
    auto shared = std::move(ep).value();
    if (closed_ || !on_accept_) {
      // Not ucp_listener_reject: UCX 1.13 asserts on the client side when wireup fails that way.
      // Accept, then close gracefully once wireup is done; the client sees a disconnect.
      shared->close();
      return;
    }
    shared->set_callbacks(on_accept_(shared));
  }

  void close_on_loop() override {
    // UCX 1.13 crashes on its async thread when a connection request reaches a destroyed listener
    // (the kernel may already have accepted the socket). So a closed listener rejects requests and
    // the ucp listener itself is destroyed with the worker.
    on_accept_ = nullptr;
    ucx_.retire_listener(std::static_pointer_cast<UcxListener>(shared_from_this()));
  }

 public:
  void destroy() {
    if (listener_ != nullptr) ucp_listener_destroy(listener_);
    listener_ = nullptr;
  }

 private:
  UcxWorkerImpl& ucx_;
  AcceptCallback on_accept_;
  ucp_listener_h listener_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<UcxWorker>> UcxWorker::create(Worker::Impl& worker) {
  auto impl = std::make_unique<UcxWorkerImpl>(worker);
  HIVEMIND_RETURN_IF_ERROR(impl->init());
  return std::unique_ptr<UcxWorker>(std::move(impl));
}

UcxWorkerImpl::UcxWorkerImpl(Worker::Impl& worker) : worker_(worker) {}

Status UcxWorkerImpl::init() {
  ucp_worker_params_t params{};
  params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  params.thread_mode = UCS_THREAD_MODE_SINGLE;  // only the I/O thread touches it
  ucs_status_t st = ucp_worker_create(worker_.context->ucx()->handle, &params, &handle_);
  if (st != UCS_OK) {
    handle_ = nullptr;
    return ucs_to_status(st, "ucp_worker_create");
  }
  ucp_worker_attr_t attr{};
  attr.field_mask = UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER;
  if (ucp_worker_query(handle_, &attr) == UCS_OK) max_am_header_ = attr.max_am_header;
  am_header_budget_ =
      std::min<size_t>(max_am_header_, worker_.context->options().ucx_max_am_header);

  const std::pair<unsigned, ucp_am_recv_callback_t> handlers[] = {
      {kAmFrame, frame_am_cb},
      {kAmMetadata, metadata_am_cb},
      {kAmSameHostFrame, same_host_am_cb<kAmSameHostFrame>},
      {kAmSameHostReply, same_host_am_cb<kAmSameHostReply>},
      {kAmSameHostConfirm, same_host_am_cb<kAmSameHostConfirm>}};
  for (const auto& [id, cb] : handlers) {
    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    hp.id = id;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    hp.cb = cb;
    hp.arg = this;
    st = ucp_worker_set_am_recv_handler(handle_, &hp);
    if (st != UCS_OK) return ucs_to_status(st, "ucp_worker_set_am_recv_handler");
  }
  st = ucp_worker_get_efd(handle_, &efd_);
  if (st != UCS_OK) return ucs_to_status(st, "ucp_worker_get_efd");
  token_ = worker_.add_fd(efd_, EPOLLIN, this);
  if (token_ == 0) return errno_error("epoll_ctl(ucx efd)", errno);
  worker_.pollers.push_back(this);
  return Status::ok();
}

UcxWorkerImpl::~UcxWorkerImpl() {
  shutdown();
  if (token_ != 0) worker_.remove_fd(efd_, token_);
  std::erase(worker_.pollers, static_cast<Poller*>(this));
  if (handle_ != nullptr) ucp_worker_destroy(handle_);
}

bool UcxWorkerImpl::progress() {
  // One call per loop turn, not "until it returns 0": what it delivered was deferred and runs at
  // the top of the next turn, and the extra call that would only confirm there is nothing more
  // costs an epoll_wait per tcp interface on client-server endpoints (their wireup lanes keep
  // UCX's tcp interfaces in the progress list even when the data goes over shared memory).
  return ucp_worker_progress(handle_) != 0;
}

bool UcxWorkerImpl::arm() {
  return ucp_worker_arm(handle_) == UCS_OK;
}

Result<std::shared_ptr<UcxEndpoint>> UcxWorkerImpl::create_endpoint(
    const std::string& peer, const std::function<void(ucp_ep_params_t&)>& fill) {
  auto ep = std::make_shared<UcxEndpoint>(worker_, *this, peer);
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_ERR_HANDLER | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  params.err_handler.cb = ep_error_cb;
  params.err_handler.arg = this;
  fill(params);
  ucp_ep_h handle = nullptr;
  ucs_status_t st = ucp_ep_create(handle_, &params, &handle);
  if (st != UCS_OK) return ucs_to_status(st, "ucp_ep_create to " + peer);
  ep->attach(handle);
  registry_.add(handle, ep);
  worker_.endpoints.insert(ep);
  return ep;
}

Result<std::shared_ptr<Endpoint>> UcxWorkerImpl::connect(const Address& address,
                                                         EndpointCallbacks callbacks) {
  HIVEMIND_ASSIGN_OR_RETURN(sockaddr_in sin, detail::resolve_ipv4(address));
  std::string peer = fmt::format("ucx://{}:{}", address.host, address.port);
  HIVEMIND_ASSIGN_OR_RETURN(auto ep, create_endpoint(peer, [&sin](ucp_ep_params_t& p) {
                              p.field_mask |=
                                  UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
                              p.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
                              p.sockaddr.addr = reinterpret_cast<const sockaddr*>(&sin);
                              p.sockaddr.addrlen = sizeof(sin);
                            }));
  ep->set_callbacks(std::move(callbacks));
  return std::shared_ptr<Endpoint>(ep);
}

Result<std::shared_ptr<Listener>> UcxWorkerImpl::listen(const Address& address,
                                                        AcceptCallback on_accept) {
  auto listener = std::make_shared<UcxListener>(worker_, *this, std::move(on_accept));
  HIVEMIND_RETURN_IF_ERROR(listener->start(address));
  worker_.listeners.insert(listener);
  return std::shared_ptr<Listener>(listener);
}

ucs_status_t UcxWorkerImpl::dispatch_am(unsigned id, const void* header, size_t header_length,
                                        void* data, size_t length,
                                        const ucp_am_recv_param_t* param) {
  UcxEndpoint* ep = nullptr;
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0)
    ep = registry_.find_open(param->reply_ep);
  if (ep == nullptr) {
    // A message for an endpoint we already closed (or one sent without a reply ep): drop it. For a
    // rendezvous, returning UCS_OK tells the sender it is done without moving the data.
    return UCS_OK;
  }
  auto keep = ep->shared_from_this();
  ep->mark_established();
  switch (id) {
    case kAmFrame:
      return ep->on_frame_am(header, header_length, data, length, param);
    case kAmMetadata:
      return ep->on_metadata_am(header, header_length, data, length, param);
    case kAmSameHostFrame:
      return ep->on_same_host_frame_am(header, header_length, length, param);
    case kAmSameHostReply:
      return ep->on_same_host_reply_am(header, header_length, length, param);
    default:
      return ep->on_same_host_confirm_am(header, header_length, length, param);
  }
}

void UcxWorkerImpl::on_ep_error(ucp_ep_h handle, ucs_status_t status) {
  UcxEndpoint* ep = registry_.find_open(handle);
  if (ep == nullptr) return;  // closing already: its error is expected
  auto keep = ep->shared_from_this();
  ep->on_peer_error(status);
}

void UcxWorkerImpl::retire_listener(std::shared_ptr<ListenerBase> listener) {
  retired_listeners_.push_back(std::move(listener));
}

void UcxWorkerImpl::shutdown() {
  if (handle_ == nullptr || shut_down_) return;
  shut_down_ = true;
  // Close what is left, then progress (bounded) until UCX finished every flush and close.
  std::vector<std::shared_ptr<UcxEndpoint>> left = registry_.open_endpoints();
  for (auto& ep : left)
    ep->fail(canceled_error("worker stopped"));
  worker_.run_queues();
  auto until = SteadyClock::now() + std::chrono::seconds(2);
  while (registry_.closing_any() && SteadyClock::now() < until) {
    ucp_worker_progress(handle_);
    worker_.run_queues();
  }
  // Flushes that never finished (a frozen peer): force-close those endpoints.
  registry_.abandon_flushes(handle_, std::chrono::seconds(1));
  registry_.drop_close_requests();
  // UCX 1.13's sockaddr connection manager finishes disconnects on its async thread after the close
  // requests complete; destroying the worker under it crashes there (seen when a peer closes during
  // wireup). Keep progressing until the worker has been quiet for a while.
  auto quiet_until = SteadyClock::now() + std::chrono::milliseconds(50);
  auto hard_stop = SteadyClock::now() + std::chrono::milliseconds(500);
  while (SteadyClock::now() < quiet_until && SteadyClock::now() < hard_stop) {
    if (ucp_worker_progress(handle_) != 0)
      quiet_until = SteadyClock::now() + std::chrono::milliseconds(50);
    worker_.run_queues();
  }
  for (auto& l : worker_.listeners)
    l->close();  // retires UCX listeners
  worker_.run_queues();
  for (auto& l : retired_listeners_)
    static_cast<UcxListener*>(l.get())->destroy();
  retired_listeners_.clear();
  // Operations UCX never completed (their requests die with the worker): complete them ourselves so
  // every callback still fires exactly once.
  for (auto& ep : left)
    ep->cancel_unfinished_sends();
  worker_.run_queues();
}

}  // namespace hivemind::transport
