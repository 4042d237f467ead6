// Budget and Charge.
#include "server/budget.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kvshuttle {

Budget::Charge& Budget::Charge::operator=(Charge&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = other.budget_;
    account_ = std::move(other.account_);
    amount_ = other.amount_;
    other.budget_ = nullptr;
    other.amount_ = 0;
  }
  return *this;
}

void Budget::Charge::Release() {
  if (budget_ == nullptr) return;
  budget_->used_.fetch_sub(amount_, std::memory_order_relaxed);
  if (account_ != nullptr) account_->used.fetch_sub(amount_, std::memory_order_relaxed);
  budget_ = nullptr;
  account_.reset();
  amount_ = 0;
}

absl::StatusOr<Budget::Charge> Budget::Take(int64_t amount, absl::string_view what,
                                            const std::shared_ptr<Account>& account) {
  if (amount < 0) amount = 0;
  if (account != nullptr && session_limit_ > 0) {
    int64_t mine = account->used.load(std::memory_order_relaxed);
    do {
      if (amount > session_limit_ - mine) {
        return absl::ResourceExhaustedError(absl::StrCat(
            what, ": needs ", amount, " ", unit_, " of the session's ", name_, " budget; it uses ",
            mine, " of ", session_limit_));
      }
    } while (!account->used.compare_exchange_weak(mine, mine + amount,
                                                  std::memory_order_relaxed));
  }
  int64_t all = used_.load(std::memory_order_relaxed);
  do {
    if (amount > limit_ - all) {
      if (account != nullptr && session_limit_ > 0) {
        account->used.fetch_sub(amount, std::memory_order_relaxed);
      }
      return absl::ResourceExhaustedError(absl::StrCat(what, ": needs ", amount, " ", unit_,
                                                       " of the daemon's ", name_,
                                                       " budget; it uses ", all, " of ", limit_));
    }
  } while (!used_.compare_exchange_weak(all, all + amount, std::memory_order_relaxed));
  if (account != nullptr && session_limit_ <= 0) {
    account->used.fetch_add(amount, std::memory_order_relaxed);
  }
  Charge charge;
  charge.budget_ = this;
  charge.account_ = account;
  charge.amount_ = amount;
  return charge;
}

namespace {

// A session's share of `limit` (at least 1 unit, so a positive budget never shuts sessions out).
int64_t SessionShare(int64_t limit, double fraction) {
  if (fraction >= 1.0) return limit;
  return std::max<int64_t>(1, static_cast<int64_t>(fraction * static_cast<double>(limit)));
}

}  // namespace

BudgetSet::BudgetSet(int64_t metadata_limit, int64_t session_metadata_limit, int64_t maps_limit,
                     int64_t session_maps_limit, int64_t pool_host_limit,
                     const std::vector<Device>& devices, double session_pool_fraction)
    : metadata("metadata", "bytes", metadata_limit, session_metadata_limit),
      maps("maps", "mappings", maps_limit, session_maps_limit),
      pool_host("pool_host", "bytes", pool_host_limit,
                SessionShare(pool_host_limit, session_pool_fraction)) {
  for (const Device& d : devices) {
    if (static_cast<int>(pool_device.size()) <= d.ordinal) pool_device.resize(d.ordinal + 1);
    pool_device[d.ordinal] = std::make_unique<Budget>(
        absl::StrCat("pool_device:", d.uuid), "bytes", d.pool_limit,
        SessionShare(d.pool_limit, session_pool_fraction));
  }
}

Budget* BudgetSet::PoolDevice(int ordinal) const {
  if (ordinal < 0 || ordinal >= static_cast<int>(pool_device.size())) return nullptr;
  return pool_device[ordinal].get();
}

std::vector<const Budget*> BudgetSet::All() const {
  std::vector<const Budget*> out = {&metadata, &maps, &pool_host};
  for (const auto& b : pool_device) {
    if (b) out.push_back(b.get());
  }
  return out;
}

}  // namespace kvshuttle
