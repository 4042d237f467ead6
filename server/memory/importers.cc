// The one table from a RegisterRegionRequest's transport to its importer.
#include "server/memory/importer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvshuttle {
namespace {

struct Transport {
  v1::RegisterRegionRequest::MemoryCase which;
  const char* field;  // the oneof field's name, for messages
  RegionImporter import;
  int maps;  // memory mappings one region of this transport holds
};

// Adding a transport: one row here and one file with its importer.
constexpr Transport kTransports[] = {
    {v1::RegisterRegionRequest::kCudaIpc, "cuda_ipc", &ImportCudaIpc, 0},
    {v1::RegisterRegionRequest::kHostShm, "host_shm", &ImportHostShm, 1},
    {v1::RegisterRegionRequest::kHostMemfd, "host_memfd", &ImportHostMemfd, 1},
};

const Transport* Find(v1::RegisterRegionRequest::MemoryCase which) {
  for (const Transport& t : kTransports) {
    if (t.which == which) return &t;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<RegionImporter> FindImporter(const v1::RegisterRegionRequest& request) {
  if (const Transport* t = Find(request.memory_case())) return t->import;
  std::vector<const char*> fields;
  for (const Transport& t : kTransports) fields.push_back(t.field);
  return absl::InvalidArgumentError(
      absl::StrCat("memory: none of ", absl::StrJoin(fields, ", "), " is set"));
}

int MapsOf(const v1::RegisterRegionRequest& request) {
  const Transport* t = Find(request.memory_case());
  return t == nullptr ? 0 : t->maps;
}

}  // namespace kvshuttle
