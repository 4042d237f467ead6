// The one place where absl::Status becomes grpc::Status (STYLE rule 3).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace kvshuttle {

// Same canonical code, same message.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace kvshuttle
