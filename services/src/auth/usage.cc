#include "auth/usage.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace tome::services {

UsageTracker::CallSlot::~CallSlot() {
  if (!tracker_) return;
  std::lock_guard<std::mutex> lock(tracker_->mu_);
  --tracker_->tenants_[tenant_].running;
}

absl::StatusOr<std::unique_ptr<UsageTracker::CallSlot>> UsageTracker::Admit(
    storage::TenantId tenant, const Quotas& quotas) {
  std::lock_guard<std::mutex> lock(mu_);
  Tenant& t = tenants_[tenant];
  if (quotas.max_concurrent_requests > 0 && t.running >= quotas.max_concurrent_requests) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "quota max_concurrent_requests: this tenant already runs ", t.running,
        " calls (its limit); retry when one finishes"));
  }
  ++t.running;
  return std::make_unique<CallSlot>(this, tenant);
}

void UsageTracker::TrimLocked(Tenant& t, absl::Time now) {
  while (!t.tokens.empty() && now - t.tokens.front().first > absl::Minutes(1)) {
    t.window_total -= t.tokens.front().second;
    t.tokens.pop_front();
  }
}

absl::Status UsageTracker::ChargeTokens(storage::TenantId tenant, int64_t tokens,
                                        const Quotas& quotas) {
  std::lock_guard<std::mutex> lock(mu_);
  Tenant& t = tenants_[tenant];
  const absl::Time now = absl::Now();
  TrimLocked(t, now);
  if (quotas.max_tokens_per_minute > 0 && t.window_total + tokens > quotas.max_tokens_per_minute) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "quota max_tokens_per_minute: ", t.window_total, " tokens in the last minute + ", tokens,
        " requested exceeds ", quotas.max_tokens_per_minute, "; retry later"));
  }
  t.tokens.emplace_back(now, tokens);
  t.window_total += tokens;
  return absl::OkStatus();
}

void UsageTracker::RecordTokens(storage::TenantId tenant, int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  Tenant& t = tenants_[tenant];
  t.tokens.emplace_back(absl::Now(), tokens);
  t.window_total += tokens;
}

int32_t UsageTracker::concurrent(storage::TenantId tenant) {
  std::lock_guard<std::mutex> lock(mu_);
  return tenants_[tenant].running;
}

int64_t UsageTracker::tokens_last_minute(storage::TenantId tenant) {
  std::lock_guard<std::mutex> lock(mu_);
  Tenant& t = tenants_[tenant];
  TrimLocked(t, absl::Now());
  return t.window_total;
}

}  // namespace tome::services
