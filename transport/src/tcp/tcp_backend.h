// The TCP backend: epoll, non-blocking sockets, TCP_NODELAY, writev/readv straight from and into
// the tensors' memory. Everything here runs on the Worker's I/O thread.
#pragma once

#include <memory>

#include <hivemind/transport/address.h>
#include <hivemind/transport/listener.h>

#include "worker_impl.h"

namespace hivemind::transport {

Result<std::shared_ptr<Endpoint>> tcp_connect(Worker::Impl& worker, const Address& address,
                                              EndpointCallbacks callbacks);
Result<std::shared_ptr<Listener>> tcp_listen(Worker::Impl& worker, const Address& address,
                                             AcceptCallback on_accept);

}  // namespace hivemind::transport
