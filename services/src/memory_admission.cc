#include "memory_admission.h"

#include <chrono>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tome::services {
namespace {

std::string MiB(int64_t bytes) { return absl::StrCat((bytes + (1 << 20) - 1) >> 20, " MiB"); }

}  // namespace

MemoryAdmission::Ticket::Ticket(Ticket&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

MemoryAdmission::Ticket& MemoryAdmission::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    if (owner_) owner_->Release(bytes_);
    owner_ = std::exchange(other.owner_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

MemoryAdmission::Ticket::~Ticket() {
  if (owner_) owner_->Release(bytes_);
}

MemoryAdmission::MemoryAdmission(int64_t budget_bytes, std::string flag)
    : budget_(budget_bytes), flag_(std::move(flag)) {}

absl::StatusOr<MemoryAdmission::Ticket> MemoryAdmission::Acquire(
    int64_t bytes, absl::Time deadline, const std::function<bool()>& cancelled) {
  if (budget_ <= 0) return Ticket();
  bytes = std::max<int64_t>(bytes, 0);
  std::unique_lock<std::mutex> lock(mu_);
  if (bytes > budget_) {
    ++refused_;
    return absl::ResourceExhaustedError(absl::StrCat(
        "this question needs about ", MiB(bytes), " of engine memory, more than the ",
        MiB(budget_), " that ", flag_, " allows for all running questions together; ask "
        "for fewer tokens (max_tokens) or have the operator raise ", flag_));
  }
  const uint64_t me = next_++;
  ++waiting_;
  // Wake up now and then to notice a cancelled client.
  constexpr auto kPoll = std::chrono::milliseconds(50);
  bool waited = false;
  while (!(serving_ == me && in_use_ + bytes <= budget_)) {
    waited = true;
    const bool timed_out = absl::Now() >= deadline;
    if (timed_out || (cancelled && cancelled())) {
      --waiting_;
      if (serving_ == me) {
        AdvanceLocked();
      } else {
        abandoned_.insert(me);
      }
      if (!timed_out) {
        return absl::CancelledError("the client cancelled the call while it waited for memory");
      }
      ++refused_;
      return absl::ResourceExhaustedError(absl::StrCat(
          "the server's engine memory for running questions (", MiB(budget_), ", ", flag_,
          ") stayed in use by earlier questions until this call's deadline (", MiB(in_use_),
          " in use, this question needs about ", MiB(bytes), "); retry in a moment"));
    }
    cv_.wait_for(lock, kPoll);
  }
  --waiting_;
  waited_ += waited ? 1 : 0;
  in_use_ += bytes;
  AdvanceLocked();
  return Ticket(this, bytes);
}

void MemoryAdmission::AdvanceLocked() {
  ++serving_;
  while (abandoned_.erase(serving_) > 0) ++serving_;
  cv_.notify_all();
}

void MemoryAdmission::Release(int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  in_use_ -= bytes;
  cv_.notify_all();
}

int64_t MemoryAdmission::in_use_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

int64_t MemoryAdmission::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_;
}

int64_t MemoryAdmission::waited() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waited_;
}

int64_t MemoryAdmission::refused() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refused_;
}

}  // namespace tome::services
