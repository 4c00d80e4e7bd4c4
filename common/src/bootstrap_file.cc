#include <algorithm>
#include <atomic>
#include <cerrno>
#include <thread>

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hivemind/common/bootstrap_file.h>

namespace hivemind {
namespace {

constexpr size_t kMaxAddressLength = 1024;

std::string directory_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status validate_address(const std::string& path, std::string_view address) {
  if (address.empty() || address.size() > kMaxAddressLength) {
    return invalid_argument_error(fmt::format(
        "bootstrap file {}: an address must have 1 to {} characters", path, kMaxAddressLength));
  }
  for (char c : address) {
    // Printable ASCII without spaces: host:port, tcp://..., /ip4/.../tcp/... all fit.
    if (c <= ' ' || c > '~') {
      return invalid_argument_error(
          fmt::format("bootstrap file {}: address '{}' contains a space or control character", path,
                      address.substr(0, 80)));
    }
  }
  return Status::ok();
}

Status write_all(int fd, std::string_view bytes, const std::string& tmp) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("write " + tmp, errno);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::ok();
}

// Writes the content to a fresh temporary file next to `path` and fsyncs it. Returns its name.
Result<std::string> write_temporary(const std::string& path,
                                    const std::vector<std::string>& addresses) {
  if (addresses.empty()) {
    return invalid_argument_error(fmt::format("bootstrap file {}: no address to write", path));
  }
  std::string content;
  for (const auto& address : addresses) {
    HIVEMIND_RETURN_IF_ERROR(validate_address(path, address));
    content += address;
    content += '\n';
  }
  if (content.size() > kBootstrapFileMaxBytes) {
    return too_large_error(
        fmt::format("bootstrap file {}: {} bytes of addresses exceed the limit of {}", path,
                    content.size(), kBootstrapFileMaxBytes));
  }
  // Unique per process and call: concurrent writers on one shared directory never share a temp
  // file.
  static std::atomic<unsigned> counter{0};
  std::string tmp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error("open " + tmp, errno);
  Status status = write_all(fd, content, tmp);
  if (status.is_ok() && ::fsync(fd) != 0) status = errno_error("fsync " + tmp, errno);
  if (::close(fd) != 0 && status.is_ok()) status = errno_error("close " + tmp, errno);
  if (!status.is_ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  return tmp;
}

// Makes the new directory entry itself durable. Some filesystems cannot fsync a directory (EINVAL);
// the rename is still atomic there, which is what readers rely on.
Status sync_directory(const std::string& path) {
  std::string dir = directory_of(path);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_error("open directory " + dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL && err != EROFS) return errno_error("fsync directory " + dir, err);
  return Status::ok();
}

}  // namespace

Status write_bootstrap_file(const std::string& path, const std::vector<std::string>& addresses) {
  HIVEMIND_ASSIGN_OR_RETURN(std::string tmp, write_temporary(path, addresses));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return errno_error("rename " + tmp + " to " + path, err);
  }
  return sync_directory(path);
}

Result<bool> publish_bootstrap_file_once(const std::string& path,
                                         const std::vector<std::string>& addresses) {
  HIVEMIND_ASSIGN_OR_RETURN(std::string tmp, write_temporary(path, addresses));
  // link(2) fails with EEXIST when the name exists, atomically, also over NFS: first publisher
  // wins.
  int rc = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0) {
    if (err == EEXIST) return false;
    return errno_error("link " + tmp + " to " + path, err);
  }
  HIVEMIND_RETURN_IF_ERROR(sync_directory(path));
  return true;
}

Result<std::optional<std::vector<std::string>>> read_bootstrap_file(const std::string& path) {
  using Addresses = std::optional<std::vector<std::string>>;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Addresses();
    return errno_error("open bootstrap file " + path, errno);
  }
  // Read at most one byte past the limit: enough to tell an oversized file without reading it all.
  std::string content(kBootstrapFileMaxBytes + 1, '\0');
  size_t size = 0;
  Status status;
  while (size < content.size()) {
    ssize_t n = ::read(fd, content.data() + size, content.size() - size);
    if (n < 0) {
      if (errno == EINTR) continue;
      status = errno_error("read bootstrap file " + path, errno);
      break;
    }
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  ::close(fd);
  HIVEMIND_RETURN_IF_ERROR(status);
  if (size > kBootstrapFileMaxBytes) {
    return too_large_error(
        fmt::format("bootstrap file {} is larger than {} bytes", path, kBootstrapFileMaxBytes));
  }
  content.resize(size);

  std::vector<std::string> addresses;
  size_t start = 0;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    if (end == std::string::npos) end = content.size();
    std::string_view line(content.data() + start, end - start);
    start = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      line.remove_suffix(1);
    }
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
      line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    Status valid = validate_address(path, line);
    if (!valid.is_ok()) return protocol_error(valid.message());
    addresses.emplace_back(line);
  }
  if (addresses.empty()) {
    return protocol_error(fmt::format("bootstrap file {} exists but holds no address", path));
  }
  return Addresses(std::move(addresses));
}

Result<std::vector<std::string>> wait_for_bootstrap_file(const std::string& path, Deadline deadline,
                                                         const Clock& clock,
                                                         BootstrapWaitOptions options) {
  if (!options.sleep) options.sleep = [](Milliseconds ms) { std::this_thread::sleep_for(ms); };
  const SteadyTime started = clock.steady_now();
  Milliseconds poll = std::max(options.first_poll, Milliseconds(1));
  while (true) {
    HIVEMIND_ASSIGN_OR_RETURN(auto addresses, read_bootstrap_file(path));
    if (addresses) return std::move(*addresses);
    if (deadline.expired(clock)) {
      auto waited = std::chrono::duration_cast<Milliseconds>(clock.steady_now() - started);
      return timeout_error(fmt::format(
          "no bootstrap file {} after waiting {} ms: the bootstrap peer writes it once it is "
          "listening; "
          "check that it started, and that this directory is on a filesystem every node shares",
          path, waited.count()));
    }
    // Never sleep past the deadline, so the timeout error comes on time.
    options.sleep(std::min(poll, deadline.remaining(clock)));
    poll = std::min(poll * 2, std::max(options.max_poll, Milliseconds(1)));
  }
}

}  // namespace hivemind
