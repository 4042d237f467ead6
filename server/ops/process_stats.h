// Figures about this process read from /proc/self at the time of the call (for the
// kvshuttle_process_* gauges).
#pragma once

#include <cstdint>

namespace kvshuttle {

struct ProcessStats {
  int64_t open_fds = -1;        // entries of /proc/self/fd (-1: unreadable)
  int64_t threads = -1;         // "Threads:" of /proc/self/status
  int64_t resident_bytes = -1;  // resident pages of /proc/self/statm × page size
};

ProcessStats ReadProcessStats();

}  // namespace kvshuttle
