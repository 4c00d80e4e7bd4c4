#include <cerrno>
#include <cstdio>
#include <string_view>

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hivemind/common/errno_text.h>
#include <hivemind/transport/swarm_key.h>

namespace hivemind::transport {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n";
  size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  size_t end = s.find_last_not_of(kSpace);
  return s.substr(begin, end - begin + 1);
}

// The hex text's bytes, or nothing when `text` is not an even run of hex digits.
bool decode_hex(std::string_view text, std::vector<uint8_t>& out) {
  if (text.empty() || text.size() % 2 != 0) return false;
  out.clear();
  for (size_t i = 0; i < text.size(); i += 2) {
    int hi = hex_value(text[i]);
    int lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<uint8_t>(hi << 4 | lo));
  }
  return true;
}

std::string to_hex(std::span<const uint8_t> bytes) {
  std::string text;
  text.reserve(bytes.size() * 2);
  for (uint8_t b : bytes)
    text += fmt::format("{:02x}", b);
  return text;
}

}  // namespace

SwarmKey::~SwarmKey() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

Result<SwarmKey> SwarmKey::from_bytes(std::span<const uint8_t> bytes) {
  if (bytes.size() < kMinBytes || bytes.size() > kMaxBytes) {
    return invalid_argument_error(fmt::format("a swarm key must have {} to {} bytes, not {}",
                                              kMinBytes, kMaxBytes, bytes.size()));
  }
  return SwarmKey(std::vector<uint8_t>(bytes.begin(), bytes.end()));
}

Result<SwarmKey> SwarmKey::generate() {
  std::vector<uint8_t> bytes(kGeneratedBytes);
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    return internal_error("RAND_bytes failed to produce a swarm key");
  return SwarmKey(std::move(bytes));
}

Result<SwarmKey> SwarmKey::load(const std::string& path) {
  const std::string fix = fmt::format(
      "(fix: chmod 600 {0}, owned by you; or create a new key "
      "with `hivemind-info --new-swarm-key FILE`)",
      path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    if (err == ELOOP) {
      return invalid_argument_error(
          fmt::format("swarm key file {} is a symbolic link; name the key file itself", path));
    }
    return Status(StatusCode::kIoError,
                  fmt::format("cannot open swarm key file {}: {}", path, errno_text(err)));
  }
  // Checked on the open descriptor, so the file read is the file checked.
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return errno_error("fstat " + path, err);
  }
  auto refuse = [&](std::string why) {
    ::close(fd);
    return invalid_argument_error(fmt::format("swarm key file {} {} {}", path, why, fix));
  };
  if (!S_ISREG(st.st_mode)) return refuse("is not a regular file");
  if (st.st_uid != ::geteuid()) {
    return refuse(
        fmt::format("is owned by uid {}, not by this user (uid {})", st.st_uid, ::geteuid()));
  }
  if ((st.st_mode & 077) != 0) {
    return refuse(
        fmt::format("has mode {:04o}: group and others must have no access", st.st_mode & 07777));
  }
  if (st.st_size > static_cast<off_t>(2 * kMaxBytes + 64)) return refuse("is too large for a key");
  std::string content(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < content.size()) {
    ssize_t n = ::read(fd, content.data() + got, content.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  content.resize(got);
  std::vector<uint8_t> bytes;
  if (!decode_hex(trim(content), bytes)) bytes.assign(content.begin(), content.end());
  OPENSSL_cleanse(content.data(), content.size());
  if (bytes.size() < kMinBytes) {
    return invalid_argument_error(fmt::format(
        "swarm key file {} holds {} key bytes; a key needs at least {} (64 hex digits) {}", path,
        bytes.size(), kMinBytes, fix));
  }
  if (bytes.size() > kMaxBytes) {
    return invalid_argument_error(
        fmt::format("swarm key file {} holds more than {} key bytes", path, kMaxBytes));
  }
  return SwarmKey(std::move(bytes));
}

Status SwarmKey::write_new(const std::string& path) const {
  if (::access(path.c_str(), F_OK) == 0) {
    return invalid_argument_error(
        fmt::format("{} already exists; a new swarm key is never written over a file", path));
  }
  std::string temp = path + ".tmp";
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error("create " + temp, errno);
  std::string text = to_hex(bytes_) + "\n";
  size_t put = 0;
  while (put < text.size()) {
    ssize_t n = ::write(fd, text.data() + put, text.size() - put);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(temp.c_str());
      return errno_error("write " + temp, err);
    }
    put += static_cast<size_t>(n);
  }
  OPENSSL_cleanse(text.data(), text.size());
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    return errno_error("fsync " + temp, err);
  }
  ::close(fd);
  // link() instead of rename(): it fails when `path` appeared meanwhile, where rename would
  // silently replace a key someone else just wrote.
  // Filesystems without hard links get rename(), after the existence check above.
  if (::link(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    if ((err == EPERM || err == EOPNOTSUPP) && ::rename(temp.c_str(), path.c_str()) == 0)
      return Status::ok();
    ::unlink(temp.c_str());
    return errno_error("create " + path, err);
  }
  ::unlink(temp.c_str());
  return Status::ok();
}

std::string SwarmKey::fingerprint() const {
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes_.data(), bytes_.size(), digest, &len, EVP_sha256(), nullptr);
  return to_hex(std::span<const uint8_t>(digest, 4));
}

}  // namespace hivemind::transport
