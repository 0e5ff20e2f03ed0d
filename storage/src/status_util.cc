#include "status_util.h"

#include "absl/strings/str_cat.h"

namespace tome::storage {

absl::Status FromRocksDb(const rocksdb::Status& status, absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  absl::StatusCode code = absl::StatusCode::kInternal;
  switch (status.code()) {
    case rocksdb::Status::kNotFound:
      code = absl::StatusCode::kNotFound;
      break;
    case rocksdb::Status::kCorruption:
      code = absl::StatusCode::kDataLoss;
      break;
    case rocksdb::Status::kNotSupported:
      code = absl::StatusCode::kUnimplemented;
      break;
    case rocksdb::Status::kInvalidArgument:
      code = absl::StatusCode::kInvalidArgument;
      break;
    case rocksdb::Status::kIOError:
      // Disk full is the operator's to fix and says so; other I/O errors may pass.
      code = status.IsNoSpace() ? absl::StatusCode::kResourceExhausted
                                : absl::StatusCode::kUnavailable;
      break;
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain:
    case rocksdb::Status::kShutdownInProgress:
      code = absl::StatusCode::kUnavailable;
      break;
    case rocksdb::Status::kTimedOut:
    case rocksdb::Status::kExpired:
      code = absl::StatusCode::kDeadlineExceeded;
      break;
    case rocksdb::Status::kAborted:
      code = absl::StatusCode::kAborted;
      break;
    default:  // kMergeInProgress, kIncomplete, kColumnFamilyDropped, ...
      code = absl::StatusCode::kInternal;
      break;
  }
  // The SstFileManager's space limit is a full disk too, whatever the code says.
  if (status.subcode() == rocksdb::Status::kSpaceLimit) {
    code = absl::StatusCode::kResourceExhausted;
  }
  return absl::Status(code, absl::StrCat(context, ": ", status.ToString()));
}

}  // namespace tome::storage
