// Session state: regions, block sets, jobs and events of one client.
#include "server/session.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kvshuttle {
namespace {

constexpr size_t kMaxQueuedEvents = 1 << 16;

bool Finished(v1::JobState state) {
  return state == v1::JOB_DONE || state == v1::JOB_FAILED || state == v1::JOB_CANCELLED;
}

absl::Status ClosedError(const std::string& what) {
  return absl::FailedPreconditionError(absl::StrCat(what, ": the session is closing"));
}

}  // namespace

absl::StatusOr<v1::Region> Session::AddRegion(uint64_t id, const std::string& name,
                                              v1::Region info, std::shared_ptr<Memory> memory) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return ClosedError("RegisterRegion");
  if (static_cast<int>(regions_.size()) >= limits_.max_regions_per_session) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "regions: the session holds ", regions_.size(), " of at most ",
        limits_.max_regions_per_session, " regions"));
  }
  if (!name.empty()) {
    for (const auto& [rid, entry] : regions_) {
      if (entry.info.name() == name) {
        return absl::AlreadyExistsError(
            absl::StrCat("name: region \"", name, "\" already exists in this session"));
      }
    }
  }
  info.set_region_id(id);
  info.set_name(name);
  regions_.emplace(id, RegionEntry{info, std::move(memory)});
  return info;
}

absl::StatusOr<bool> Session::RemoveRegion(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = regions_.find(id);
  if (it == regions_.end()) {
    auto released = released_regions_.find(id);
    if (released == released_regions_.end()) {
      return absl::NotFoundError(absl::StrCat("region_id: ", id, " is not a region of this session"));
    }
    return !released->second.expired();
  }
  // Block sets of this session that use the region are dropped with it.
  for (auto bs = block_sets_.begin(); bs != block_sets_.end();) {
    const auto& ids = bs->second->region_ids;
    bs = std::find(ids.begin(), ids.end(), id) != ids.end() ? block_sets_.erase(bs) : std::next(bs);
  }
  std::weak_ptr<Memory> weak = it->second.memory;
  regions_.erase(it);
  released_regions_.emplace(id, weak);
  released_order_.push_back(id);
  // Forget released ids past the last kReleasedRegionMemory whose memory is gone (50k
  // register/unregister cycles must not grow the daemon). Older ones that jobs still hold are
  // kept aside until their memory goes.
  for (auto it = held_released_.begin(); it != held_released_.end();) {
    auto entry = released_regions_.find(*it);
    if (entry == released_regions_.end() || entry->second.expired()) {
      if (entry != released_regions_.end()) released_regions_.erase(entry);
      it = held_released_.erase(it);
    } else {
      ++it;
    }
  }
  while (released_order_.size() > kReleasedRegionMemory) {
    const uint64_t oldest = released_order_.front();
    released_order_.pop_front();
    auto entry = released_regions_.find(oldest);
    if (entry == released_regions_.end()) continue;
    if (entry->second.expired()) {
      released_regions_.erase(entry);
    } else {
      held_released_.insert(oldest);
    }
  }
  return !weak.expired();
}

absl::StatusOr<RegionView> Session::FindRegion(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = regions_.find(id);
  if (it != regions_.end()) return RegionView{it->second.memory, false};
  if (released_regions_.count(id) != 0) return RegionView{nullptr, true};
  return absl::NotFoundError(absl::StrCat("region_id: ", id, " is not a region of this session"));
}

std::vector<v1::Region> Session::ListRegions() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::Region> out;
  for (const auto& [id, entry] : regions_) {
    v1::Region r = entry.info;
    r.set_users(static_cast<uint32_t>(entry.memory.use_count() - 1));
    out.push_back(r);
  }
  for (const auto& [id, weak] : released_regions_) {
    if (auto memory = weak.lock()) {
      v1::Region r;
      r.set_region_id(id);
      r.set_size(memory->size());
      r.set_releasing(true);
      r.set_users(static_cast<uint32_t>(memory.use_count() - 1));
      out.push_back(r);
    }
  }
  return out;
}

absl::Status Session::AddBlockSet(std::shared_ptr<BlockSetRecord> record) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return ClosedError("RegisterBlockSet");
  if (static_cast<int>(block_sets_.size()) >= limits_.max_block_sets_per_session) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "block_sets: the session holds ", block_sets_.size(), " of at most ",
        limits_.max_block_sets_per_session, " block sets"));
  }
  if (!record->name.empty()) {
    for (const auto& [id, bs] : block_sets_) {
      if (bs->name == record->name) {
        return absl::AlreadyExistsError(absl::StrCat("name: block set \"", record->name,
                                                     "\" already exists in this session"));
      }
    }
  }
  for (uint64_t rid : record->region_ids) {
    if (regions_.count(rid) == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("region_id: region ", rid, " was released during registration"));
    }
  }
  block_sets_.emplace(record->id, std::move(record));
  return absl::OkStatus();
}

absl::Status Session::RemoveBlockSet(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (block_sets_.erase(id) == 0) {
    return absl::NotFoundError(
        absl::StrCat("block_set_id: ", id, " is not a block set of this session"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<BlockSetRecord>> Session::FindBlockSet(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return ClosedError("block_set_id");
  auto it = block_sets_.find(id);
  if (it == block_sets_.end()) {
    return absl::NotFoundError(
        absl::StrCat("block_set_id: ", id, " is not a block set of this session"));
  }
  return it->second;
}

std::vector<std::shared_ptr<BlockSetRecord>> Session::ListBlockSets() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<BlockSetRecord>> out;
  for (const auto& [id, bs] : block_sets_) out.push_back(bs);
  return out;
}

absl::Status Session::AddJobs(
    const std::vector<std::pair<uint64_t, std::shared_ptr<CancelToken>>>& jobs) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return ClosedError("SubmitBatch");
  for (const auto& [id, cancelled] : jobs) {
    JobRecord record;
    record.result.set_job_id(id);
    record.result.set_state(v1::JOB_QUEUED);
    record.cancelled = cancelled;
    jobs_.emplace(id, std::move(record));
  }
  pending_ += static_cast<int>(jobs.size());
  return absl::OkStatus();
}

void Session::WithdrawJobs(const std::vector<uint64_t>& ids) {
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t id : ids) {
    auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second.result.state() != v1::JOB_QUEUED) continue;
    jobs_.erase(it);
    --pending_;
  }
}

void Session::CompleteJob(const v1::JobResult& result) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(result.job_id());
    if (it == jobs_.end() || Finished(it->second.result.state())) return;
    const bool launched = it->second.result.launched();
    it->second.result = result;
    it->second.result.set_launched(launched || result.launched());
    --pending_;
    finished_.push_back(result.job_id());
    EvictHistoryLocked();
    if (attached_) {
      if (events_.size() >= kMaxQueuedEvents) events_.pop_front();
      events_.push_back(result);
    }
  }
  cv_.notify_all();
}

void Session::MarkLaunched(uint64_t id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end() || Finished(it->second.result.state())) return;
    it->second.result.set_launched(true);
  }
  cv_.notify_all();
}

void Session::EvictHistoryLocked() {
  while (static_cast<int>(finished_.size()) > limits_.max_job_history) {
    jobs_.erase(finished_.front());
    finished_.pop_front();
  }
}

absl::Status Session::CancelJobs(const std::vector<uint64_t>& ids,
                                std::vector<uint64_t>* cancelled,
                                std::vector<uint64_t>* stopping) {
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t id : ids) {
    if (jobs_.count(id) == 0) {
      return absl::NotFoundError(absl::StrCat("job_ids: ", id, " is not a job of this session"));
    }
  }
  for (uint64_t id : ids) {
    JobRecord& job = jobs_.at(id);
    if (job.result.state() != v1::JOB_QUEUED) continue;  // finished: nothing to do
    const bool was_started = job.cancelled->started();
    if (!job.cancelled->CancelOrStop()) continue;
    (was_started || job.cancelled->started() ? stopping : cancelled)->push_back(id);
  }
  return absl::OkStatus();
}

absl::Status Session::BeginWait() {
  std::lock_guard<std::mutex> lock(mu_);
  if (waits_ >= limits_.max_waits_per_session) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "Wait: the session has ", waits_, " of at most ", limits_.max_waits_per_session,
        " Wait calls blocked; wait for more jobs in one call, or use the Attach stream"));
  }
  ++waits_;
  return absl::OkStatus();
}

void Session::EndWait() {
  std::lock_guard<std::mutex> lock(mu_);
  --waits_;
}

absl::StatusOr<v1::WaitResponse> Session::Wait(const std::vector<uint64_t>& ids,
                                               absl::Time deadline, bool until_launched,
                                               const std::function<bool()>& cancelled) {
  std::unique_lock<std::mutex> lock(mu_);
  for (uint64_t id : ids) {
    if (jobs_.count(id) == 0) {
      return absl::NotFoundError(absl::StrCat("job_ids: ", id, " is not a job of this session"));
    }
  }
  auto all_done = [&] {
    for (uint64_t id : ids) {
      auto it = jobs_.find(id);
      if (it == jobs_.end()) continue;
      const v1::JobResult& r = it->second.result;
      if (!Finished(r.state()) && !(until_launched && r.launched())) return false;
    }
    return true;
  };
  while (!all_done() && !closed_ && absl::Now() < deadline && !cancelled()) {
    const absl::Duration step = std::min(absl::Milliseconds(100), deadline - absl::Now());
    cv_.wait_for(lock, absl::ToChronoMilliseconds(std::max(step, absl::Milliseconds(1))));
  }
  v1::WaitResponse response;
  bool done = true;
  for (uint64_t id : ids) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) {  // evicted from history while waiting: report it as done
      v1::JobResult* r = response.add_results();
      r->set_job_id(id);
      r->set_state(v1::JOB_DONE);
      continue;
    }
    v1::JobResult* r = response.add_results();
    *r = it->second.result;
    if (r->state() == v1::JOB_QUEUED && it->second.cancelled->started()) {
      r->set_state(v1::JOB_RUNNING);
    }
    done = done && Finished(r->state());
  }
  response.set_all_done(done);
  return response;
}

absl::Status Session::Attach() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return ClosedError("Attach");
  if (attached_) {
    return absl::FailedPreconditionError("Attach: the session already has an Attach stream");
  }
  attached_ = true;
  return absl::OkStatus();
}

void Session::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  attached_ = false;
}

std::vector<v1::JobResult> Session::TakeEvents(absl::Duration timeout, bool* closed) {
  std::unique_lock<std::mutex> lock(mu_);
  if (events_.empty() && !closed_) {
    cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout));
  }
  std::vector<v1::JobResult> out(events_.begin(), events_.end());
  events_.clear();
  *closed = closed_;
  return out;
}

void Session::Touch(absl::Time lease_deadline) {
  std::lock_guard<std::mutex> lock(mu_);
  lease_deadline_ = std::max(lease_deadline_, lease_deadline);
}

bool Session::Expired(absl::Time now) const {
  std::lock_guard<std::mutex> lock(mu_);
  return !attached_ && now > lease_deadline_;
}

void Session::Close() {
  std::map<uint64_t, RegionEntry> regions;
  std::map<uint64_t, std::shared_ptr<BlockSetRecord>> block_sets;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    // Queued jobs are dropped; running ones stop at their next chunk boundary.
    for (auto& [id, job] : jobs_) {
      if (job.result.state() == v1::JOB_QUEUED) job.cancelled->CancelOrStop();
    }
    regions.swap(regions_);
    block_sets.swap(block_sets_);
  }
  cv_.notify_all();
  // `regions` and `block_sets` go out of scope here, outside the lock; memory still used by
  // in-flight jobs is released by the executors when those finish.
}

bool Session::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

v1::SessionSummary Session::Summary(bool own) const {
  std::lock_guard<std::mutex> lock(mu_);
  v1::SessionSummary s;
  s.set_client_name(client_name_);
  s.set_attached(attached_);
  s.set_own(own);
  s.set_regions(static_cast<uint32_t>(regions_.size()));
  s.set_block_sets(static_cast<uint32_t>(block_sets_.size()));
  s.set_jobs_pending(static_cast<uint32_t>(pending_));
  s.set_age_seconds(static_cast<uint64_t>(absl::ToInt64Seconds(absl::Now() - created_)));
  return s;
}

int Session::pending_jobs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_;
}

std::shared_ptr<Budget::Account> Session::pool_device_account(int ordinal) {
  std::lock_guard<std::mutex> lock(pool_accounts_mu_);
  std::shared_ptr<Budget::Account>& account = pool_device_accounts_[ordinal];
  if (account == nullptr) account = std::make_shared<Budget::Account>();
  return account;
}

}  // namespace kvshuttle
