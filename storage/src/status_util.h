// RocksDB statuses as absl::Status, keeping RocksDB's message.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rocksdb/status.h"

namespace tome::storage {

// Maps `status` to the closest absl code; the message is "<context>: <RocksDB's message>".
// Disk full becomes ResourceExhausted, other I/O errors Unavailable, corruption DataLoss.
absl::Status FromRocksDb(const rocksdb::Status& status, absl::string_view context);

}  // namespace tome::storage
