// Admission control for engine memory (GPU memory on CUDA): a question reserves the bytes
// it will need (the state it opens, its prompt and answer tokens) before it runs. When the
// budget is taken it queues, first come first served, until earlier work releases memory,
// its deadline passes or its client goes away; a question larger than the whole budget is
// refused at once. So concurrent questions never overcommit the engine: past the budget
// they wait or get RESOURCE_EXHAUSTED with the reason, instead of failing an allocation
// halfway through a forward pass.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tome::services {

class MemoryAdmission {
 public:
  // Releases its bytes when destroyed.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept;
    Ticket& operator=(Ticket&& other) noexcept;
    ~Ticket();
    int64_t bytes() const { return bytes_; }

   private:
    friend class MemoryAdmission;
    Ticket(MemoryAdmission* owner, int64_t bytes) : owner_(owner), bytes_(bytes) {}
    MemoryAdmission* owner_ = nullptr;
    int64_t bytes_ = 0;
  };

  // budget_bytes 0: no limit (every Acquire succeeds at once). `flag` names the setting in
  // error messages (e.g. "--ask_memory_mb").
  MemoryAdmission(int64_t budget_bytes, std::string flag);

  // Waits until `bytes` fit (in arrival order) or fails: ResourceExhausted when they can
  // never fit or did not by `deadline`, Cancelled when `cancelled()` turns true.
  absl::StatusOr<Ticket> Acquire(int64_t bytes, absl::Time deadline,
                                 const std::function<bool()>& cancelled);

  int64_t budget_bytes() const { return budget_; }
  int64_t in_use_bytes() const;
  int64_t waiting() const;
  int64_t refused() const;
  int64_t waited() const;  // admitted after waiting for memory

 private:
  void Release(int64_t bytes);
  void AdvanceLocked();  // the next live waiter's turn

  const int64_t budget_;
  const std::string flag_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int64_t in_use_ = 0;
  uint64_t next_ = 0, serving_ = 0;  // arrival numbers: taken, and the one whose turn it is
  std::set<uint64_t> abandoned_;      // waiters that gave up before their turn
  int64_t waiting_ = 0, refused_ = 0, waited_ = 0;
};

}  // namespace tome::services
