// The NCCL backend: the group mean of CUDA tensors computed by ncclAllReduce(ncclAvg), one
// distinct GPU per member, with the fault handling NCCL alone does not give.
//
// This header exists in every build; the backend itself only in builds with NCCL
// (HIVEMIND_WITH_NCCL, docs/averaging.md). Elsewhere the factory says "built without NCCL" and the
// Averager runs the transport backend alone.
//
// How a round runs (averaging/src/nccl_backend.cc):
//  - the leader's setup bytes are an ncclUniqueId: a fresh one, or the one of the communicator the
//    leader already holds for exactly this member list;
//  - every member keeps one communicator per key, reused while the member list, its rank, its GPU
//    and the leader's id stay the same, and replaced (the old one aborted) when any of them
//    changes;
//  - the communicator is created nonblocking (ncclConfig_t::blocking = 0) and the all-reduce is
//    enqueued on a stream of the backend's own that waits for each tensor's stream
//    (TensorRef::cuda_stream); the results land in a scratch device buffer, no host copy;
//  - the host polls the init, the collective's completion, ncclCommGetAsyncError and the deadline;
//    on an NCCL error or the deadline the communicator is aborted (ncclCommAbort) and forgotten,
//    the round fails naming the cause, and the tensors are untouched;
//  - on success the scratch buffer is copied into the tensors.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <hivemind/averaging/backend.h>
#include <hivemind/common/result.h>
#include <hivemind/common/status.h>

namespace hivemind::averaging {

// Backend::name() of the NCCL backend, as members advertise it in MemberInfo::backends.
inline constexpr std::string_view kNcclBackendName = "nccl";

// Whether this build has the NCCL backend at all (compile time).
bool nccl_built_in();

// OK when an NCCL round can run in this process: NCCL built in and at least one CUDA device
// visible. Otherwise the reason: "built without NCCL", "no CUDA device (...)".
Status nccl_available();

// The NCCL library's version as the loaded library reports it ("2.28.9"); an error when built
// without NCCL.
Result<std::string> nccl_version();

// The backend, or "built without NCCL". A backend made where no GPU is visible exists but is
// usable_for() nothing, so a CPU-only process can still list it in its preferences.
Result<std::shared_ptr<Backend>> make_nccl_backend();

}  // namespace hivemind::averaging
