// The bootstrap file: how the peers of one launch find the first one without a hard-coded address.
//
// The first node (the DHT bootstrap) writes its address(es) to a file on a shared filesystem once
// it is listening; every other node waits for the file with a deadline and dials what it reads.
// Starting all peers at the same moment then forms one DHT, never two (hivemind#624): nobody dials
// anything before the one well-known peer is up.
//
// The file is written atomically (a temporary file in the same directory, fsync, rename, fsync of
// the directory), so a reader sees either no file or the whole content, also on NFS and Lustre
// where rename within a directory is atomic. Content: one address per line, '#' comments allowed.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <hivemind/common/clock.h>
#include <hivemind/common/result.h>

namespace hivemind {

// Far more than any list of addresses; a bigger file is not a bootstrap file.
inline constexpr size_t kBootstrapFileMaxBytes = 64 * 1024;

// Writes (or replaces) the file atomically with one address per line. Creates no directories: the
// directory must exist (a missing shared directory is a setup error worth seeing).
Status write_bootstrap_file(const std::string& path, const std::vector<std::string>& addresses);

// Publishes the file only if none exists yet, atomically (link(2) of a complete temporary file), so
// of several peers racing to become the bootstrap exactly one wins. True when this call published;
// false when the file was already there (the caller then reads it and joins that peer).
Result<bool> publish_bootstrap_file_once(const std::string& path,
                                         const std::vector<std::string>& addresses);

// One look at the file: nullopt when it does not exist yet; the addresses when it does; an error
// when it exists but is unreadable, too large, empty or holds something that is not an address.
Result<std::optional<std::vector<std::string>>> read_bootstrap_file(const std::string& path);

struct BootstrapWaitOptions {
  // Polling backs off from `first_poll`, doubling up to `max_poll`: quick when the writer is quick,
  // cheap for a metadata server when hundreds of nodes wait for a slow one.
  Milliseconds first_poll{10};
  Milliseconds max_poll{500};
  // How to wait between polls; tests inject one that advances a ManualClock instead of sleeping.
  std::function<void(Milliseconds)> sleep;
};

// Polls until the file exists and is valid, or the deadline passes: then a Timeout error that names
// the file and what to check. A file that exists but is invalid is an error at once (no point
// waiting).
Result<std::vector<std::string>> wait_for_bootstrap_file(
    const std::string& path, Deadline deadline, const Clock& clock = SystemClock::instance(),
    BootstrapWaitOptions options = {});

}  // namespace hivemind
