// The device-tensor cases of `hivemind-bench transport`: a device tensor sent from this process to
// a peer process (this program re-executed with --device-peer) that wants it in its own device
// memory, by each of the transport's three paths, each next to its baseline from the same run:
//   staged: stage_to_host through a pinned pool, a host send, the receiver's pinned slot and
//           copy_to_device — against cudaMemcpy device -> pinned host -> device;
//   direct: the device Buffer handed to a CUDA-aware UCX, landing in the receiver's device memory
//           — against `ucx_perftest -t ucp_am_bw -m cuda,cuda` of the same UCX;
//   ipc:    export_ipc's handle in the request's metadata, open_ipc + copy_device_to_device in the
//           receiver — against a raw cudaIpcOpenMemHandle + cudaMemcpy between the same processes.
// Without a CUDA device (or without CUDA in the build, or a UCX that cannot move device memory for
// the direct case) each case prints why it was skipped and nothing is reported.
#pragma once

#include <cstddef>
#include <vector>

#include "support/report.h"

namespace hivemind::bench::transport_device {

struct DeviceCaseOptions {
  std::vector<size_t> sizes;  // bytes, e.g. 4 MiB, 64 MiB, 256 MiB
  int reps = 20;              // timed sends per case (median), after 2 warm-ups
};

// The sending side: starts the peer, runs every case, reports, stops the peer.
int run_device_cases(const DeviceCaseOptions& options, Reporter& reporter);

// The receiving side (`hivemind-bench transport --device-peer`): serves the cases' methods, prints
// one line "hivemind-device-peer <staged address> <direct address or ->" on stdout, and exits when
// its stdin closes.
int run_device_peer(const DeviceCaseOptions& options);

}  // namespace hivemind::bench::transport_device
