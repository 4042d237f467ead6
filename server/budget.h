// Budgets: what requests can make the daemon allocate, counted in bytes (or mappings) against a
// daemon-wide limit and, for session-made objects, a per-session limit — checked before the
// allocation happens. A Charge is the receipt: it returns its amount when destroyed, so an
// object that holds its Charge gives the budget back exactly when it goes away.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvshuttle {

// One budget: a limit, what is in use, and a name and unit for messages.
class Budget {
 public:
  // What one session has taken of this budget (shared by the session and its charges, which
  // may outlive it: a running job's plan is returned when the job ends).
  struct Account {
    std::atomic<int64_t> used{0};
  };

  // A receipt for `amount` units; returns them on destruction. Move-only; empty by default.
  class Charge {
   public:
    Charge() = default;
    Charge(Charge&& other) noexcept { *this = std::move(other); }
    Charge& operator=(Charge&& other) noexcept;
    Charge(const Charge&) = delete;
    Charge& operator=(const Charge&) = delete;
    ~Charge() { Release(); }
    int64_t amount() const { return amount_; }
    // Returns the amount now (idempotent).
    void Release();

   private:
    friend class Budget;
    Budget* budget_ = nullptr;
    std::shared_ptr<Account> account_;
    int64_t amount_ = 0;
  };

  // `limit` for the whole daemon, `session_limit` for one account (0 = no per-session limit).
  Budget(std::string name, std::string unit, int64_t limit, int64_t session_limit)
      : name_(std::move(name)),
        unit_(std::move(unit)),
        limit_(limit),
        session_limit_(session_limit) {}
  Budget(const Budget&) = delete;
  Budget& operator=(const Budget&) = delete;

  // Takes `amount` (≥ 0) for `what` (named in the error), from `account` when not null.
  // RESOURCE_EXHAUSTED naming the budget, the amount, the use and the limit (the session's or
  // the daemon's) when it does not fit; nothing is taken then.
  absl::StatusOr<Charge> Take(int64_t amount, absl::string_view what,
                              const std::shared_ptr<Account>& account = nullptr);

  const std::string& name() const { return name_; }
  const std::string& unit() const { return unit_; }
  int64_t limit() const { return limit_; }
  int64_t session_limit() const { return session_limit_; }
  int64_t used() const { return used_.load(std::memory_order_relaxed); }

 private:
  const std::string name_;
  const std::string unit_;
  const int64_t limit_;
  const int64_t session_limit_;
  std::atomic<int64_t> used_{0};
};

// The daemon's budgets (DaemonOptions::Budgets, resolved to numbers).
struct BudgetSet {
  struct Device {
    int ordinal = 0;
    std::string uuid;
    int64_t pool_limit = 0;  // bytes of device pools on this GPU
  };
  // Pool budgets get a per-session limit of `session_pool_fraction` × their limit.
  BudgetSet(int64_t metadata_limit, int64_t session_metadata_limit, int64_t maps_limit,
            int64_t session_maps_limit, int64_t pool_host_limit,
            const std::vector<Device>& devices, double session_pool_fraction = 1.0);

  Budget metadata;
  Budget maps;
  Budget pool_host;
  std::vector<std::unique_ptr<Budget>> pool_device;  // index = GPU ordinal (null: none)

  // The device pool budget of GPU `ordinal` (null when it has none).
  Budget* PoolDevice(int ordinal) const;
  // Every budget, for GetInfo and metrics.
  std::vector<const Budget*> All() const;
};

}  // namespace kvshuttle
