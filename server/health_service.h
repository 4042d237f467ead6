// grpc.health.v1.Health, served from the generated descriptors so that server reflection can
// describe it (gRPC's built-in health service has no descriptors in the pool: grpcurl then
// lists the service but cannot call or describe it). Check answers from a status table;
// Watch streams the status and every change, a bounded number of watchers at a time.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"

namespace kvshuttle {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  // `services`: the names Check knows besides "" (the server as a whole); all start
  // NOT_SERVING. At most `max_watchers` Watch streams at once (more: RESOURCE_EXHAUSTED).
  HealthService(std::initializer_list<std::string> services, int max_watchers = 32);

  // Sets every known service (and "") SERVING or NOT_SERVING; Watch streams see the change.
  void SetServing(bool serving);
  // Ends every Watch stream (server shutdown); later Watch calls end at once.
  void Shutdown();

  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override;

 private:
  const int max_watchers_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, ServingStatus> status_;
  uint64_t version_ = 0;
  int watchers_ = 0;
  bool shutdown_ = false;
};

}  // namespace kvshuttle
