// A rocksdb::FileSystem that can be told to fail: every write and sync of new data returns
// NoSpace (a full disk) or an I/O error while a fault is armed. In the manner of LevelDB's
// FaultInjectionTestEnv and RocksDB's FaultInjectionTestFS, which RocksDB does not install.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "rocksdb/file_system.h"

namespace tome::storage::testing {

enum class Fault { kNone, kNoSpace, kIoError };

class FaultInjectionFs : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultInjectionFs(const std::shared_ptr<rocksdb::FileSystem>& base)
      : rocksdb::FileSystemWrapper(base) {}

  static const char* kClassName() { return "TomeFaultInjectionFs"; }
  const char* Name() const override { return kClassName(); }

  void Arm(Fault fault) { fault_ = fault; }
  int64_t injected() const { return injected_.load(); }

  rocksdb::IOStatus Injected() {
    ++injected_;
    return fault_ == Fault::kNoSpace ? rocksdb::IOStatus::NoSpace("injected: disk full")
                                     : rocksdb::IOStatus::IOError("injected: device error");
  }
  bool armed() const { return fault_ != Fault::kNone; }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    if (armed()) return Injected();
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->NewWritableFile(fname, opts, &file, dbg);
    if (s.ok()) result->reset(new File(std::move(file), this));
    return s;
  }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile>&& file, FaultInjectionFs* fs)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(file)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->armed()) return fs_->Injected();
      return target()->Append(data, options, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->armed()) return fs_->Injected();
      return target()->Append(data, options, info, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
      if (fs_->armed()) return fs_->Injected();
      return target()->Sync(options, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                            rocksdb::IODebugContext* dbg) override {
      if (fs_->armed()) return fs_->Injected();
      return target()->Fsync(options, dbg);
    }

   private:
    FaultInjectionFs* fs_;
  };

  std::atomic<Fault> fault_{Fault::kNone};
  std::atomic<int64_t> injected_{0};
};

}  // namespace tome::storage::testing
