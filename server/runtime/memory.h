// Memory the daemon can address: a mapped CUDA IPC allocation, a mapped host shared-memory
// object, or a pool allocation. Owned through shared_ptr; the last owner releases it (unmap,
// IPC close, free), which is how "release after in-flight jobs finish" happens.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace kvshuttle {

enum class MemoryPlace : uint8_t {
  kDevice = 0,  // GPU memory of `device`
  kHost,        // host memory (pinned/registered when gpu_visible)
};

class Memory {
 public:
  // `release` runs once, in the destructor.
  Memory(uint64_t base, uint64_t size, MemoryPlace place, int device, bool gpu_visible,
         std::function<void()> release)
      : base_(base),
        size_(size),
        place_(place),
        device_(device),
        gpu_visible_(gpu_visible),
        release_(std::move(release)) {}
  ~Memory() {
    if (release_) release_();
  }
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;

  // Address usable by executors: a device pointer (device memory) or a host pointer that, when
  // gpu_visible, is also valid on every GPU (pinned, UVA).
  uint64_t base() const { return base_; }
  uint64_t size() const { return size_; }
  MemoryPlace place() const { return place_; }
  int device() const { return device_; }  // ordinal for kDevice, -1 for kHost
  bool gpu_visible() const { return gpu_visible_; }

 private:
  uint64_t base_;
  uint64_t size_;
  MemoryPlace place_;
  int device_;
  bool gpu_visible_;
  std::function<void()> release_;
};

}  // namespace kvshuttle
