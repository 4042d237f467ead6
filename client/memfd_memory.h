// Host memory a client lends the daemon as a memfd: created here with memfd_create, sealed
// against shrinking (so the daemon can never lose pages under a copy), mapped read-write, and
// sent over the daemon's descriptor side channel (Session::RegisterMemfdRegion). Nothing is
// named: no other process can open it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace kvshuttle {

class MemfdMemory {
 public:
  // A zero-filled memfd of `bytes` (> 0), sealed with F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL
  // and mapped.
  static absl::StatusOr<std::unique_ptr<MemfdMemory>> Create(size_t bytes);
  ~MemfdMemory();
  MemfdMemory(const MemfdMemory&) = delete;
  MemfdMemory& operator=(const MemfdMemory&) = delete;

  int fd() const { return fd_; }
  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MemfdMemory(int fd, void* data, size_t size) : fd_(fd), data_(data), size_(size) {}
  int fd_ = -1;
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Sends `fds` (1 to the daemon's max_fds) with `token` over the side channel at `socket_path`
// and returns the daemon's answer: OK, or its error (code and message). UNAVAILABLE when the
// channel cannot be reached.
absl::Status SendDescriptors(const std::string& socket_path, absl::string_view token,
                             absl::Span<const int> fds);

}  // namespace kvshuttle
