// /proc/self readers.
#include "server/ops/process_stats.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"

namespace kvshuttle {

ProcessStats ReadProcessStats() {
  ProcessStats stats;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    int64_t count = 0;
    const int own = ::dirfd(dir);
    while (const dirent* entry = ::readdir(dir)) {
      int fd = -1;
      if (absl::SimpleAtoi(entry->d_name, &fd) && fd != own) ++count;
    }
    ::closedir(dir);
    stats.open_fds = count;
  }
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "Threads:")) {
      int64_t threads = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &threads)) stats.threads = threads;
      break;
    }
  }
  std::ifstream statm("/proc/self/statm");
  int64_t size_pages = 0;
  int64_t resident_pages = 0;
  if (statm >> size_pages >> resident_pages) {
    stats.resident_bytes = resident_pages * ::sysconf(_SC_PAGESIZE);
  }
  return stats;
}

MachineFacts ReadMachineFacts() {
  MachineFacts facts;
  if (std::FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
    long long value = -1;
    if (std::fscanf(f, "%lld", &value) == 1) facts.max_map_count = value;
    std::fclose(f);
  }
  if (std::FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    while (std::fgets(line, sizeof(line), f) != nullptr) {
      long long kib = 0;
      if (std::sscanf(line, "MemTotal: %lld kB", &kib) == 1) {
        facts.ram_bytes = kib * 1024;
        break;
      }
    }
    std::fclose(f);
  }
  return facts;
}

}  // namespace kvshuttle
