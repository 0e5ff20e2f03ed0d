// Per-tenant usage that quotas limit: calls running now and tokens in the last minute.
// Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "auth/tenants.h"

namespace tome::services {

class UsageTracker {
 public:
  // Holds one of a tenant's concurrent-call slots until destroyed.
  class CallSlot {
   public:
    CallSlot(UsageTracker* tracker, storage::TenantId tenant) : tracker_(tracker), tenant_(tenant) {}
    CallSlot(CallSlot&& o) noexcept : tracker_(o.tracker_), tenant_(o.tenant_) { o.tracker_ = nullptr; }
    CallSlot(const CallSlot&) = delete;
    ~CallSlot();

   private:
    UsageTracker* tracker_;
    storage::TenantId tenant_;
  };

  // A slot for one call; ResourceExhausted naming the quota when the tenant already runs
  // max_concurrent_requests calls.
  absl::StatusOr<std::unique_ptr<CallSlot>> Admit(storage::TenantId tenant, const Quotas& quotas);

  // Fails with ResourceExhausted (naming the quota) if `tokens` more would exceed the
  // tenant's tokens per minute; otherwise records them.
  absl::Status ChargeTokens(storage::TenantId tenant, int64_t tokens, const Quotas& quotas);
  // Records tokens already spent (generation) without checking.
  void RecordTokens(storage::TenantId tenant, int64_t tokens);

  int32_t concurrent(storage::TenantId tenant);
  int64_t tokens_last_minute(storage::TenantId tenant);

 private:
  struct Tenant {
    int32_t running = 0;
    std::deque<std::pair<absl::Time, int64_t>> tokens;  // (when, how many), oldest first
    int64_t window_total = 0;
  };
  void TrimLocked(Tenant& t, absl::Time now);

  std::mutex mu_;
  std::map<storage::TenantId, Tenant> tenants_;
};

}  // namespace tome::services
