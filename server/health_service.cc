// HealthService: the status table, Check and Watch.
#include "server/health_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"

namespace kvshuttle {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

HealthService::HealthService(std::initializer_list<std::string> services, int max_watchers)
    : max_watchers_(max_watchers) {
  status_[""] = HealthCheckResponse::NOT_SERVING;
  for (const std::string& s : services) status_[s] = HealthCheckResponse::NOT_SERVING;
}

void HealthService::SetServing(bool serving) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, status] : status_) {
      status = serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
    }
    ++version_;
  }
  changed_.notify_all();
}

void HealthService::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
    ++version_;
  }
  changed_.notify_all();
}

grpc::Status HealthService::Check(grpc::ServerContext*, const HealthCheckRequest* request,
                                  HealthCheckResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = status_.find(request->service());
  if (it == status_.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("service: \"", request->service().substr(0, 128),
                                     "\" is not served here"));
  }
  response->set_status(it->second);
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(grpc::ServerContext* context, const HealthCheckRequest* request,
                                  grpc::ServerWriter<HealthCheckResponse>* writer) {
  std::unique_lock<std::mutex> lock(mu_);
  if (watchers_ >= max_watchers_) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("Watch: ", watchers_, " of at most ", max_watchers_,
                                     " health watchers are open"));
  }
  ++watchers_;
  uint64_t seen = version_ - 1;  // send the current status first
  ServingStatus last = HealthCheckResponse::UNKNOWN;
  bool sent = false;
  while (!shutdown_ && !context->IsCancelled()) {
    if (seen != version_) {
      seen = version_;
      auto it = status_.find(request->service());
      const ServingStatus now =
          it == status_.end() ? HealthCheckResponse::SERVICE_UNKNOWN : it->second;
      if (!sent || now != last) {
        HealthCheckResponse response;
        response.set_status(now);
        lock.unlock();
        const bool ok = writer->Write(response);
        lock.lock();
        if (!ok) break;
        sent = true;
        last = now;
      }
    }
    changed_.wait_for(lock, std::chrono::milliseconds(200));
  }
  --watchers_;
  return shutdown_ ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "Watch: the server is stopping")
                   : grpc::Status::OK;
}

}  // namespace kvshuttle
