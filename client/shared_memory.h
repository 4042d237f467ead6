// Host memory a client lends the daemon: a POSIX shared-memory object, created, mapped and
// named here, registered with Session::RegisterHostShmRegion by name.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace kvshuttle {

// A mapped POSIX shm object owned by this process. The name is unlinked and the mapping
// removed on destruction; a daemon that mapped it keeps its own mapping until it lets go.
class SharedMemory {
 public:
  // Creates an object of `bytes` (> 0) named "/kvshuttle-<pid>-<counter>-<random>", with
  // permissions `mode` (exactly; the umask does not apply), zero-filled and mapped read-write.
  // The daemon must be able to open it: 0600 suits a daemon running as root or as this user.
  static absl::StatusOr<std::unique_ptr<SharedMemory>> Create(size_t bytes, mode_t mode = 0600);
  ~SharedMemory();
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;

  // The shm_open name, with its leading '/'.
  const std::string& name() const { return name_; }
  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  SharedMemory(std::string name, void* data, size_t size)
      : name_(std::move(name)), data_(data), size_(size) {}

  std::string name_;
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace kvshuttle
