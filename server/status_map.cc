// absl::Status → grpc::Status.
#include "server/status_map.h"

#include <string>

namespace kvshuttle {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

}  // namespace kvshuttle
