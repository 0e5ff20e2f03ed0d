#include "auth/record_store.h"

#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tome/base/status_macros.h"

namespace tome::services {
namespace {

class ContextStoreRecordStore final : public RecordStore {
 public:
  explicit ContextStoreRecordStore(storage::ContextStore* store) : store_(store) {}

  absl::Status Put(storage::RecordKind kind, absl::string_view id,
                   absl::string_view value) override {
    return store_->PutRecord(kind, id, value);
  }
  absl::StatusOr<std::string> Get(storage::RecordKind kind, absl::string_view id) override {
    return store_->GetRecord(kind, id);
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> List(
      storage::RecordKind kind) override {
    return store_->ListRecords(kind, "");
  }
  absl::StatusOr<int64_t> NextId(absl::string_view name, int64_t first) override {
    std::lock_guard<std::mutex> lock(mu_);  // one process owns the store
    int64_t id = first;
    if (auto next = store_->GetRecord(storage::RecordKind::kServer, name); next.ok()) {
      if (!absl::SimpleAtoi(*next, &id)) {
        return absl::DataLossError(absl::StrCat("the counter ", name, " is damaged"));
      }
    } else if (!absl::IsNotFound(next.status())) {
      return next.status();
    }
    TOME_RETURN_IF_ERROR(
        store_->PutRecord(storage::RecordKind::kServer, name, absl::StrCat(id + 1)));
    return id;
  }

 private:
  storage::ContextStore* store_;
  std::mutex mu_;
};

}  // namespace

std::unique_ptr<RecordStore> ContextStoreRecords(storage::ContextStore* store) {
  return std::make_unique<ContextStoreRecordStore>(store);
}

}  // namespace tome::services
