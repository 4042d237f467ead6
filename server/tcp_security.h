// Security of the optional TCP listener: TLS or mTLS server credentials from PEM files, and the
// loopback check that keeps a plaintext gRPC port off the network.
#pragma once

#include <grpcpp/security/server_credentials.h>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/options.h"

namespace kvshuttle {

// True when `address` (host:port or [v6]:port) names a loopback host: localhost, 127.0.0.0/8
// or ::1. False for every other host, an empty host (":port", every interface) and malformed
// addresses.
bool IsLoopbackAddress(absl::string_view address);

// Credentials of the TCP listener: insecure without tls.cert_file; TLS with it (the key is
// tls.key_file); mTLS, requiring and verifying client certificates against
// tls.client_ca_file, when that is set too. FAILED_PRECONDITION naming the option and the file
// when one cannot be read or holds no PEM block. The files are read once, here.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TcpServerCredentials(
    const TlsOptions& tls);

}  // namespace kvshuttle
