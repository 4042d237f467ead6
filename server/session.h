// Sessions: everything one client registered, its jobs and its completion events. A session
// is the unit of isolation — ids are looked up only inside the caller's session.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kvshuttle/v1/kvshuttle.pb.h"
#include "server/block_set.h"
#include "server/budget.h"
#include "server/net/connections.h"
#include "server/options.h"
#include "server/runtime/executor.h"

namespace kvshuttle {

struct RegionEntry {
  v1::Region info;  // region_id, name, memory, gpu_uuid, size
  std::shared_ptr<Memory> memory;
};

// Finished or released ids a session remembers for idempotent repeats (UnregisterRegion of a
// region already released answers OK for the last this many).
inline constexpr size_t kReleasedRegionMemory = 4096;

struct JobRecord {
  v1::JobResult result;
  std::shared_ptr<CancelToken> cancelled;
};

class Session {
 public:
  // `serial`: a daemon-unique number (fair scheduling, descriptor tokens); `owner`: who opened
  // it (a session opened over the unix socket is usable only by callers of the same uid).
  Session(std::string id, uint64_t serial, std::string client_name, PeerIdentity owner,
          absl::Time lease_deadline, const Limits& limits)
      : id_(std::move(id)),
        serial_(serial),
        client_name_(std::move(client_name)),
        owner_(std::move(owner)),
        created_(absl::Now()),
        limits_(limits),
        lease_deadline_(lease_deadline) {}

  const std::string& id() const { return id_; }
  uint64_t serial() const { return serial_; }
  const std::string& client_name() const { return client_name_; }
  const PeerIdentity& owner() const { return owner_; }
  // True when `caller` may use this session: the same uid for sessions opened over the unix
  // socket; TCP sessions (no uid) are usable by any caller holding the id over TCP.
  bool UsableBy(const PeerIdentity& caller) const {
    return owner_.local ? caller.local && caller.uid == owner_.uid : !caller.local;
  }
  // This session's use of the daemon's budgets (see Budget::Take).
  const std::shared_ptr<Budget::Account>& metadata_account() const { return metadata_account_; }
  const std::shared_ptr<Budget::Account>& maps_account() const { return maps_account_; }
  // This session's share of the host pool budget, and of GPU `ordinal`'s device pool budget.
  const std::shared_ptr<Budget::Account>& pool_host_account() const { return pool_host_account_; }
  std::shared_ptr<Budget::Account> pool_device_account(int ordinal);

  // Wait calls blocked at once: BeginWait is RESOURCE_EXHAUSTED over max_waits_per_session;
  // every successful BeginWait is paired with EndWait.
  absl::Status BeginWait();
  void EndWait();

  // Regions. AddRegion: RESOURCE_EXHAUSTED over the quota, ALREADY_EXISTS for a taken name,
  // FAILED_PRECONDITION when closed.
  absl::StatusOr<v1::Region> AddRegion(uint64_t id, const std::string& name,
                                       v1::Region info, std::shared_ptr<Memory> memory);
  // Returns deferred = true when block sets or jobs still use it (released when they finish).
  // A repeat on a region of this session that is already released or releasing is OK.
  absl::StatusOr<bool> RemoveRegion(uint64_t id);
  absl::StatusOr<RegionView> FindRegion(uint64_t id) const;
  std::vector<v1::Region> ListRegions() const;

  // Block sets; same error conventions.
  absl::Status AddBlockSet(std::shared_ptr<BlockSetRecord> record);
  absl::Status RemoveBlockSet(uint64_t id);
  // NOT_FOUND for unknown ids; FAILED_PRECONDITION when one of its regions is releasing.
  absl::StatusOr<std::shared_ptr<BlockSetRecord>> FindBlockSet(uint64_t id) const;
  std::vector<std::shared_ptr<BlockSetRecord>> ListBlockSets() const;

  // Jobs. AddJobs registers queued jobs; CompleteJob records a result and queues an event.
  absl::Status AddJobs(const std::vector<std::pair<uint64_t, std::shared_ptr<CancelToken>>>& jobs);
  // Forgets jobs that never reached an executor (their batch was refused): no result, no event.
  void WithdrawJobs(const std::vector<uint64_t>& ids);
  void CompleteJob(const v1::JobResult& result);
  // Notes that a job's copies are on its GPU stream (JobResult.launched) and wakes waiters.
  void MarkLaunched(uint64_t id);
  // Cancels queued jobs among `ids` (into `cancelled`) and asks running ones to stop at their
  // next chunk boundary (into `stopping`); NOT_FOUND for an id that is not this session's.
  absl::Status CancelJobs(const std::vector<uint64_t>& ids, std::vector<uint64_t>* cancelled,
                          std::vector<uint64_t>* stopping);
  // Waits until every job in `ids` finished (or, with `until_launched`, is launched or
  // finished), the deadline passed, the session closed or `cancelled()` returns true.
  // NOT_FOUND for unknown ids. Returns results in `ids` order.
  absl::StatusOr<v1::WaitResponse> Wait(const std::vector<uint64_t>& ids, absl::Time deadline,
                                        bool until_launched,
                                        const std::function<bool()>& cancelled);

  // Attach stream support. Attach: FAILED_PRECONDITION if already attached or closed.
  absl::Status Attach();
  void Detach();
  // Pops pending events, waiting up to `timeout`; `closed` reports whether the session closed.
  std::vector<v1::JobResult> TakeEvents(absl::Duration timeout, bool* closed);

  // Lease: Touch extends it; Expired says the session should be closed by the reaper.
  void Touch(absl::Time lease_deadline);
  bool Expired(absl::Time now) const;

  // Marks the session closed: cancels queued jobs and stops running ones at their next chunk
  // boundary, drops regions and block sets (memory goes once in-flight jobs finish), wakes
  // waiters. Idempotent.
  void Close();
  bool closed() const;

  v1::SessionSummary Summary(bool own) const;
  int pending_jobs() const;

 private:
  void EvictHistoryLocked();

  const std::string id_;
  const uint64_t serial_;
  const std::string client_name_;
  const PeerIdentity owner_;
  const std::shared_ptr<Budget::Account> metadata_account_ = std::make_shared<Budget::Account>();
  const std::shared_ptr<Budget::Account> maps_account_ = std::make_shared<Budget::Account>();
  const std::shared_ptr<Budget::Account> pool_host_account_ =
      std::make_shared<Budget::Account>();
  std::mutex pool_accounts_mu_;
  std::map<int, std::shared_ptr<Budget::Account>> pool_device_accounts_;
  const absl::Time created_;
  const Limits limits_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  absl::Time lease_deadline_;
  bool attached_ = false;
  bool closed_ = false;
  std::map<uint64_t, RegionEntry> regions_;
  // Regions released by UnregisterRegion: still held by jobs (weak_ptr alive), or remembered
  // for idempotent repeats (the last kReleasedRegionMemory, oldest first in released_order_).
  std::map<uint64_t, std::weak_ptr<Memory>> released_regions_;
  std::deque<uint64_t> released_order_;
  std::set<uint64_t> held_released_;  // older than the window, still held by jobs
  int waits_ = 0;
  std::map<uint64_t, std::shared_ptr<BlockSetRecord>> block_sets_;
  std::map<uint64_t, JobRecord> jobs_;
  std::deque<uint64_t> finished_;  // finished job ids, oldest first (history bound)
  int pending_ = 0;
  std::deque<v1::JobResult> events_;
};

}  // namespace kvshuttle
