// ContextStore on RocksDB: one column family per kind of data (column_families.h), keys that
// make each document one range (keys.h), checksummed state values (value_codec.h).
//
// Reads take no lock. Every read-modify-write of a document record (append, status,
// checkpoint commit, delete) holds that document's mutex from reading the record to writing
// the batch that replaces it, so concurrent writers of one document never lose an update.
// Different documents use different mutexes (striped), so their writes share RocksDB's group
// commit instead of queueing behind each other's fsync.

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "column_families.h"
#include "document_codec.h"
#include "keys.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/metadata.h"
#include "rocksdb/options.h"
#include "rocksdb/snapshot.h"
#include "rocksdb/write_batch.h"
#include "status_util.h"
#include "tome/base/status_macros.h"
#include "tome/base/work_pool.h"
#include "tome/storage/context_store.h"
#include "value_codec.h"

namespace tome::storage {
namespace {

constexpr size_t kMaxNameBytes = 256;
constexpr size_t kMaxSectionNameBytes = 4096;
// Large appends are split so that no value is huge and a token range reads only its chunks.
constexpr size_t kTextChunkBytes = size_t{1} << 20;
constexpr size_t kTokenChunkTokens = size_t{1} << 18;  // 1 MiB of int32
constexpr int kMutexStripes = 64;

// In the default column family: the layout version of the whole store, so that a later
// layout change can recognise (and migrate or refuse) an older store.
constexpr absl::string_view kStoreFormatKey = "tome.store_format";
constexpr absl::string_view kStoreFormat = "1";

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

std::string DocName(TenantId tenant, DocumentId id) {
  return absl::StrCat("document ", id, " of tenant ", tenant);
}

std::string EncodeTokens(absl::Span<const int32_t> tokens) {
  std::string out(tokens.size() * sizeof(int32_t), '\0');
  if constexpr (std::endian::native == std::endian::little) {
    if (!tokens.empty()) std::memcpy(out.data(), tokens.data(), out.size());
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const auto v = static_cast<uint32_t>(tokens[i]);
      for (int b = 0; b < 4; ++b) out[4 * i + b] = static_cast<char>((v >> (8 * b)) & 0xff);
    }
  }
  return out;
}

void DecodeTokens(const char* p, size_t count, int32_t* out) {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(out, p, count * sizeof(int32_t));
  } else {
    for (size_t i = 0; i < count; ++i) {
      uint32_t v = 0;
      for (int b = 3; b >= 0; --b) v = (v << 8) | static_cast<uint8_t>(p[4 * i + b]);
      out[i] = static_cast<int32_t>(v);
    }
  }
}

class RocksDbContextStore;

// Collects encoded state values in a WriteBatch. Not thread-safe (one producer), and must not
// outlive its store.
class RocksDbCheckpoint final : public ContextStore::Checkpoint {
 public:
  RocksDbCheckpoint(const RocksDbContextStore* store, TenantId tenant, DocumentId id)
      : store_(store), tenant_(tenant), id_(id) {}

  void Put(const StateKey& key, absl::string_view bytes) override;
  int64_t num_records() const override { return num_records_; }
  int64_t num_bytes() const override { return num_bytes_; }

 private:
  friend class RocksDbContextStore;

  const RocksDbContextStore* const store_;
  const TenantId tenant_;
  const DocumentId id_;
  rocksdb::WriteBatch batch_;
  // The block/page records written, for deleting the shorter records they supersede.
  std::vector<StateKey> keys_;
  absl::Status status_;  // the first failed Put, reported by CommitCheckpoint
  bool committed_ = false;
  int64_t num_records_ = 0;
  int64_t num_bytes_ = 0;
};

class RocksDbContextStore final : public ContextStore {
 public:
  static absl::StatusOr<std::unique_ptr<ContextStore>> Open(const std::string& path,
                                                            const StoreOptions& options);
  ~RocksDbContextStore() override;

  absl::StatusOr<DocumentRecord> CreateDocument(TenantId tenant, absl::string_view name) override;
  absl::StatusOr<DocumentRecord> CreateDocumentWithId(TenantId tenant, DocumentId id,
                                                      absl::string_view name) override;
  // chosen_id 0: the next id of the counter.
  absl::StatusOr<DocumentRecord> NewDocument(TenantId tenant, DocumentId chosen_id,
                                             absl::string_view name);
  absl::StatusOr<DocumentRecord> GetDocument(TenantId tenant, DocumentId id) override;
  absl::StatusOr<std::vector<DocumentRecord>> ListDocuments(TenantId tenant, DocumentId after_id,
                                                            int limit) override;
  absl::Status DeleteDocument(TenantId tenant, DocumentId id) override;
  absl::StatusOr<TenantId> DocumentOwner(DocumentId id) override;
  absl::StatusOr<DocumentRecord> SetSharing(TenantId tenant, DocumentId id, bool is_public,
                                            std::vector<TenantId> shared_with) override;
  absl::Status PutRecord(RecordKind kind, absl::string_view id, absl::string_view value) override;
  absl::StatusOr<std::string> GetRecord(RecordKind kind, absl::string_view id) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListRecords(
      RecordKind kind, absl::string_view id_prefix) override;
  absl::Status DeleteRecord(RecordKind kind, absl::string_view id) override;
  absl::StatusOr<DocumentRecord> AppendText(TenantId tenant, DocumentId id, absl::string_view text,
                                            absl::Span<const int32_t> tokens,
                                            absl::Span<const NewSection> sections) override;
  absl::StatusOr<std::vector<SectionInfo>> ListSections(TenantId tenant, DocumentId id) override;
  absl::StatusOr<std::string> ReadText(TenantId tenant, DocumentId id) override;
  absl::StatusOr<std::string> ReadTextRange(TenantId tenant, DocumentId id, int64_t begin,
                                            int64_t end) override;
  absl::StatusOr<std::vector<int32_t>> ReadTokens(TenantId tenant, DocumentId id, int64_t begin,
                                                  int64_t end) override;
  absl::Status SetStatus(TenantId tenant, DocumentId id, DocumentStatus status,
                         absl::string_view error) override;
  std::unique_ptr<Checkpoint> BeginCheckpoint(TenantId tenant, DocumentId id) override;
  absl::StatusOr<DocumentRecord> CommitCheckpoint(Checkpoint& checkpoint,
                                                  int64_t state_tokens) override;
  absl::StatusOr<std::string> GetState(TenantId tenant, DocumentId id,
                                       const StateKey& key) override;
  std::vector<absl::StatusOr<std::string>> GetStates(TenantId tenant, DocumentId id,
                                                     absl::Span<const StateKey> keys) override;
  absl::Status VisitStates(TenantId tenant, DocumentId id, absl::Span<const StateKey> keys,
                           StateVisitor visit) override;
  absl::StatusOr<DocumentRecord> ResetState(TenantId tenant, DocumentId id) override;
  absl::StatusOr<int64_t> DocumentBytes(TenantId tenant, DocumentId id) override;
  absl::StatusOr<int64_t> CollectGarbage() override;

  // Adds the encoded value of one state record to `batch`.
  absl::Status AddState(TenantId tenant, DocumentId id, const StateKey& key,
                        absl::string_view bytes, rocksdb::WriteBatch* batch) const;

 private:
  RocksDbContextStore(const std::string& path, const StoreOptions& options);

  rocksdb::ColumnFamilyHandle* cf(Cf c) const { return cf_[static_cast<int>(c)]; }
  absl::Mutex& DocumentMutex(TenantId tenant, DocumentId id);
  // Reads the first id to hand out (Open).
  absl::Status LoadNextId();
  absl::Status CheckStoreFormat();

  // The record of a document; NotFound if absent. Reads at `snapshot` when given.
  absl::StatusOr<DocumentRecord> ReadRecord(TenantId tenant, DocumentId id,
                                            const rocksdb::Snapshot* snapshot = nullptr);
  absl::Status PutRecord(const DocumentRecord& record, rocksdb::WriteBatch* batch);
  // Units [begin, end) of a document's chunked text (1-byte units) or token ids (4-byte
  // units) at `snapshot`: copy(first, data, n) receives each run of n units from unit
  // `first` on. DataLoss "<damaged> near <unit> N" when a chunk is missing, misaligned or
  // the chunks end early (damaged: e.g. "the text of tenant 1 document 2 is damaged").
  absl::Status ReadChunkRange(Cf family, TenantId tenant, DocumentId id,
                              const rocksdb::Snapshot* snapshot, int64_t begin, int64_t end,
                              size_t unit_bytes, absl::string_view damaged,
                              absl::string_view unit,
                              const std::function<void(int64_t, const char*, int64_t)>& copy);
  absl::Status Write(rocksdb::WriteBatch* batch, absl::string_view what);
  absl::Status RecoverIfNeeded();
  // Opens db_ and the family handles at path_ (Open, recovery), and closes them.
  absl::Status OpenDb(bool read_only);
  void CloseDb();
  absl::Status CheckOpen() const;
  absl::Status CheckWritable() const;
  absl::Status WriteUnavailable(const absl::Status& cause) const;
  // Deletes the records of `key`'s block or page with fewer rows than key.rows.
  absl::Status DeleteSuperseded(TenantId tenant, DocumentId id, const StateKey& key,
                                rocksdb::WriteBatch* batch);
  // Approximate bytes of [begin, end) in `c`, memtables included.
  absl::StatusOr<int64_t> RangeBytes(Cf c, const std::string& begin, const std::string& end);

  const Fingerprint fingerprint_;
  const std::string path_;
  const StoreOptions options_;
  rocksdb::WriteOptions write_options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::unique_ptr<WorkPool> read_pool_;                // GetStates' parallel blob reads
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // every opened family, to destroy
  std::array<rocksdb::ColumnFamilyHandle*, kNumCfs> cf_{};

  // Set when a write failed: RocksDB then refuses writes (disk full, I/O errors), so the next
  // operation first resumes or reopens the database.
  std::atomic<bool> needs_recovery_{false};
  std::atomic<bool> last_write_failed_for_space_{false};
  bool read_only_ = false;  // after a failed recovery; guarded by db_mu_
  // Held shared by every operation, exclusively while the database is reopened.
  mutable absl::Mutex db_mu_;

  absl::Mutex id_mu_;
  DocumentId next_id_ ABSL_GUARDED_BY(id_mu_) = 1;
  std::array<absl::Mutex, kMutexStripes> document_mu_;
};

void RocksDbCheckpoint::Put(const StateKey& key, absl::string_view bytes) {
  if (!status_.ok() || committed_) {
    if (status_.ok()) {
      status_ = absl::FailedPreconditionError("Put on a checkpoint that was already committed");
    }
    return;
  }
  status_ = store_->AddState(tenant_, id_, key, bytes, &batch_);
  if (status_.ok()) {
    if (key.rows > 0) keys_.push_back(key);
    ++num_records_;
    num_bytes_ += static_cast<int64_t>(bytes.size());
  }
}

RocksDbContextStore::RocksDbContextStore(const std::string& path, const StoreOptions& options)
    : fingerprint_(HashFingerprint(options.model_fingerprint)),
      path_(path),
      options_(options),
      read_pool_(std::make_unique<WorkPool>(options.read_threads)) {
  write_options_.sync = options.sync_writes;
}

RocksDbContextStore::~RocksDbContextStore() { CloseDb(); }

void RocksDbContextStore::CloseDb() {
  if (!db_) return;
  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
  handles_.clear();
  cf_.fill(nullptr);
  db_->Close().PermitUncheckedError();
  db_.reset();
}

absl::Status RocksDbContextStore::OpenDb(bool read_only) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = options_.create_if_missing;
  db_options.create_missing_column_families = true;
  if (options_.env != nullptr) db_options.env = options_.env;
  // Bounds for a long-running server: all families' memtables together (the largest is
  // flushed beyond this), and the write-ahead log on disk (beyond it, the families holding
  // the oldest log are flushed so that it can be deleted).
  db_options.db_write_buffer_size = size_t{128} << 20;
  db_options.max_total_wal_size = uint64_t{256} << 20;

  std::shared_ptr<rocksdb::Cache> cache =
      rocksdb::NewLRUCache(static_cast<size_t>(options_.block_cache_bytes));
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
  for (Cf c : kAllCfs) families.emplace_back(std::string(CfName(c)), CfOptions(c, cache));
  // RocksDB opens a database only with all of its families: keep any we don't know (a newer
  // Tome's) open with default options.
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(db_options, path_, &existing).ok()) {
    for (const std::string& name : existing) {
      const bool known = std::any_of(families.begin(), families.end(),
                                     [&](const auto& f) { return f.name == name; });
      if (!known) families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
  }
  rocksdb::DB* db = nullptr;
  const rocksdb::Status opened =
      read_only ? rocksdb::DB::OpenForReadOnly(db_options, path_, families, &handles_, &db)
                : rocksdb::DB::Open(db_options, path_, families, &handles_, &db);
  TOME_RETURN_IF_ERROR(FromRocksDb(opened, absl::StrCat("opening the context store at ", path_)));
  db_.reset(db);
  read_only_ = read_only;
  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    for (Cf c : kAllCfs) {
      if (handle->GetName() == CfName(c)) cf_[static_cast<int>(c)] = handle;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ContextStore>> RocksDbContextStore::Open(
    const std::string& path, const StoreOptions& options) {
  if (path.empty()) return absl::InvalidArgumentError("the context store path is empty");
  if (options.model_fingerprint.empty()) {
    return absl::InvalidArgumentError("the model fingerprint is empty");
  }
  if (options.block_cache_bytes < 0) {
    return absl::InvalidArgumentError("block_cache_bytes must not be negative");
  }
  if (options.read_threads < 0 || options.read_threads > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("read_threads must be 0..64, not ", options.read_threads));
  }
  std::unique_ptr<RocksDbContextStore> store(new RocksDbContextStore(path, options));
  TOME_RETURN_IF_ERROR(store->OpenDb(/*read_only=*/false));
  TOME_RETURN_IF_ERROR(store->CheckStoreFormat());
  TOME_RETURN_IF_ERROR(store->LoadNextId());
  TOME_RETURN_IF_ERROR(store->CollectGarbage().status());
  return std::unique_ptr<ContextStore>(std::move(store));
}

absl::Status RocksDbContextStore::CheckStoreFormat() {
  std::string format;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(),
               rocksdb::Slice(kStoreFormatKey.data(), kStoreFormatKey.size()), &format);
  if (s.IsNotFound()) {
    rocksdb::WriteBatch batch;
    TOME_RETURN_IF_ERROR(
        FromRocksDb(batch.Put(db_->DefaultColumnFamily(),
                              rocksdb::Slice(kStoreFormatKey.data(), kStoreFormatKey.size()),
                              rocksdb::Slice(kStoreFormat.data(), kStoreFormat.size())),
                    "recording the store format"));
    return Write(&batch, "recording the store format");
  }
  TOME_RETURN_IF_ERROR(FromRocksDb(s, "reading the store format"));
  if (format != kStoreFormat) {
    return absl::FailedPreconditionError(absl::StrCat("the context store has layout format ",
                                                      format, "; this Tome reads ", kStoreFormat));
  }
  return absl::OkStatus();
}

absl::Status RocksDbContextStore::LoadNextId() {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), cf(Cf::kMeta),
               rocksdb::Slice(kNextDocumentIdKey.data(), kNextDocumentIdKey.size()), &value);
  absl::MutexLock lock(&id_mu_);
  if (s.IsNotFound()) {
    next_id_ = 1;
    return absl::OkStatus();
  }
  TOME_RETURN_IF_ERROR(FromRocksDb(s, "reading the document id counter"));
  if (value.size() != 8) {
    return absl::DataLossError(
        absl::StrCat("the document id counter is ", value.size(), " bytes long instead of 8"));
  }
  next_id_ = ReadBigEndian64(value.data());
  return absl::OkStatus();
}

absl::Mutex& RocksDbContextStore::DocumentMutex(TenantId tenant, DocumentId id) {
  uint64_t h = (id ^ (tenant * 0x9e3779b97f4a7c15ull)) * 0xbf58476d1ce4e5b9ull;
  return document_mu_[(h >> 32) % kMutexStripes];
}

absl::StatusOr<DocumentRecord> RocksDbContextStore::ReadRecord(TenantId tenant, DocumentId id,
                                                               const rocksdb::Snapshot* snapshot) {
  rocksdb::ReadOptions read_options;
  read_options.snapshot = snapshot;
  rocksdb::PinnableSlice value;
  rocksdb::Status s = db_->Get(read_options, cf(Cf::kMeta), DocumentPrefix(tenant, id), &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat(DocName(tenant, id), " not found"));
  }
  TOME_RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat("reading ", DocName(tenant, id))));
  return DecodeDocument(absl::string_view(value.data(), value.size()), tenant, id);
}

absl::Status RocksDbContextStore::PutRecord(const DocumentRecord& record,
                                            rocksdb::WriteBatch* batch) {
  TOME_ASSIGN_OR_RETURN(std::string value, EncodeDocument(record));
  return FromRocksDb(batch->Put(cf(Cf::kMeta), DocumentPrefix(record.tenant, record.id), value),
                     "adding a document record to a batch");
}

absl::Status RocksDbContextStore::Write(rocksdb::WriteBatch* batch, absl::string_view what) {
  rocksdb::Status s = db_->Write(write_options_, batch);
  if (!s.ok() && (s.IsIOError() || s.IsNoSpace() || s.IsIncomplete())) {
    needs_recovery_ = true;
    last_write_failed_for_space_ = s.IsNoSpace();
  }
  return FromRocksDb(s, what);
}

absl::Status RocksDbContextStore::RecoverIfNeeded() {
  if (!needs_recovery_.load()) return absl::OkStatus();
  absl::WriterMutexLock lock(&db_mu_);
  if (!needs_recovery_.load()) return absl::OkStatus();
  // A failed log write leaves RocksDB refusing writes. Resume() clears recoverable errors;
  // others need the database closed and opened again, which replays the log up to the last
  // complete write: exactly the committed batches.
  if (db_ && !read_only_ && db_->Resume().ok()) {
    needs_recovery_ = false;
    return absl::OkStatus();
  }
  CloseDb();
  absl::Status reopened = OpenDb(/*read_only=*/false);
  if (reopened.ok()) {
    needs_recovery_ = false;
    return absl::OkStatus();
  }
  // Still failing (the disk is still full): serve reads from a read-only handle meanwhile.
  OpenDb(/*read_only=*/true).IgnoreError();
  return WriteUnavailable(reopened);
}

absl::Status RocksDbContextStore::WriteUnavailable(const absl::Status& cause) const {
  const std::string message = absl::StrCat(
      "the context store cannot write (", cause.message(),
      "); free disk space or repair the device: it recovers by itself at the next write");
  return last_write_failed_for_space_ ? absl::ResourceExhaustedError(message)
                                      : absl::UnavailableError(message);
}

absl::Status RocksDbContextStore::CheckOpen() const {
  if (!db_) return absl::UnavailableError("the context store is closed after an I/O error");
  return absl::OkStatus();
}

absl::Status RocksDbContextStore::CheckWritable() const {
  TOME_RETURN_IF_ERROR(CheckOpen());
  if (read_only_) return WriteUnavailable(absl::UnavailableError("it is read-only"));
  return absl::OkStatus();
}

absl::StatusOr<DocumentRecord> RocksDbContextStore::CreateDocument(TenantId tenant,
                                                                   absl::string_view name) {
  return NewDocument(tenant, 0, name);
}

absl::StatusOr<DocumentRecord> RocksDbContextStore::CreateDocumentWithId(TenantId tenant,
                                                                         DocumentId id,
                                                                         absl::string_view name) {
  if (id < kMinChosenDocumentId) {
    return absl::InvalidArgumentError(
        absl::StrCat("a chosen document id must be at least ", kMinChosenDocumentId));
  }
  return NewDocument(tenant, id, name);
}

absl::StatusOr<DocumentRecord> RocksDbContextStore::NewDocument(TenantId tenant,
                                                                DocumentId chosen_id,
                                                                absl::string_view name) {
  TOME_RETURN_IF_ERROR(RecoverIfNeeded());
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckWritable());
  if (name.empty()) return absl::InvalidArgumentError("the document name is empty");
  if (name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the document name is ", name.size(),
                                                   " bytes long; the limit is ", kMaxNameBytes));
  }
  if (!IsValidUtf8(name)) {
    return absl::InvalidArgumentError("the document name must be valid UTF-8");
  }
  DocumentRecord record;
  record.tenant = tenant;
  record.name = std::string(name);
  record.created_micros = record.updated_micros = NowMicros();
  record.status = DocumentStatus::kEmpty;

  // The counter and the record commit together, so an id is never handed out twice, even
  // across a crash. A failed write still burns its id: it may have reached the log.
  absl::MutexLock lock(&id_mu_);
  rocksdb::WriteBatch batch;
  if (chosen_id != 0) {
    std::string existing;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), cf(Cf::kMeta), DocumentOwnerKey(chosen_id), &existing);
    if (s.ok()) return absl::AlreadyExistsError(absl::StrCat("document ", chosen_id, " exists"));
    if (!s.IsNotFound()) {
      TOME_RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat("looking up document ", chosen_id)));
    }
    record.id = chosen_id;
    TOME_RETURN_IF_ERROR(PutRecord(record, &batch));
  } else {
    record.id = next_id_++;
    TOME_RETURN_IF_ERROR(PutRecord(record, &batch));
    std::string counter;
    AppendBigEndian64(next_id_, &counter);
    TOME_RETURN_IF_ERROR(FromRocksDb(
        batch.Put(cf(Cf::kMeta),
                  rocksdb::Slice(kNextDocumentIdKey.data(), kNextDocumentIdKey.size()), counter),
        "adding the id counter to a batch"));
  }
  std::string owner;
  AppendBigEndian64(tenant, &owner);
  TOME_RETURN_IF_ERROR(FromRocksDb(batch.Put(cf(Cf::kMeta), DocumentOwnerKey(record.id), owner),
                                   "adding the owner index to a batch"));
  TOME_RETURN_IF_ERROR(Write(&batch, absl::StrCat("creating ", DocName(tenant, record.id))));
  return record;
}

absl::StatusOr<DocumentRecord> RocksDbContextStore::GetDocument(TenantId tenant, DocumentId id) {
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckOpen());
  return ReadRecord(tenant, id);
}

absl::StatusOr<std::vector<DocumentRecord>> RocksDbContextStore::ListDocuments(TenantId tenant,
                                                                               DocumentId after_id,
                                                                               int limit) {
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckOpen());
  if (limit < 0) return absl::InvalidArgumentError("the list limit must not be negative");
  std::vector<DocumentRecord> records;
  if (limit == 0 || after_id == UINT64_MAX) return records;
  const std::string tenant_prefix = TenantPrefix(tenant);
  rocksdb::ReadOptions read_options;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cf(Cf::kMeta)));
  for (it->Seek(DocumentPrefix(tenant, after_id + 1));
       it->Valid() && it->key().starts_with(tenant_prefix); it->Next()) {
    // Only the 16-byte keys are records (longer ones would be per-document metadata).
    if (it->key().size() != kDocumentPrefixSize) continue;
    TenantId key_tenant = 0;
    DocumentId key_id = 0;
    ParseDocumentPrefix(absl::string_view(it->key().data(), it->key().size()), &key_tenant,
                        &key_id);
    TOME_ASSIGN_OR_RETURN(DocumentRecord record,
                          DecodeDocument(absl::string_view(it->value().data(), it->value().size()),
                                         key_tenant, key_id));
    records.push_back(std::move(record));
    if (static_cast<int>(records.size()) >= limit) break;
  }
  TOME_RETURN_IF_ERROR(FromRocksDb(it->status(), "listing documents"));
  return records;
}

absl::Status RocksDbContextStore::DeleteDocument(TenantId tenant, DocumentId id) {
  TOME_RETURN_IF_ERROR(RecoverIfNeeded());
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckWritable());
  absl::MutexLock lock(&DocumentMutex(tenant, id));
  TOME_RETURN_IF_ERROR(ReadRecord(tenant, id).status());
  const std::string begin = DocumentPrefix(tenant, id);
  const std::string end = DocumentPrefixEnd(tenant, id);  // not empty: the record exists
  rocksdb::WriteBatch batch;
  // The record is in the meta range, so it goes in the same batch as everything else.
  for (Cf c : kAllCfs) {
    TOME_RETURN_IF_ERROR(
        FromRocksDb(batch.DeleteRange(cf(c), begin, end), "adding a range deletion to a batch"));
  }
  TOME_RETURN_IF_ERROR(FromRocksDb(batch.Delete(cf(Cf::kMeta), DocumentOwnerKey(id)),
                                   "removing the owner index"));
  return Write(&batch, absl::StrCat("deleting ", DocName(tenant, id)));
}

absl::StatusOr<DocumentRecord> RocksDbContextStore::AppendText(
    TenantId tenant, DocumentId id, absl::string_view text, absl::Span<const int32_t> tokens,
    absl::Span<const NewSection> sections) {
  TOME_RETURN_IF_ERROR(RecoverIfNeeded());
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckWritable());
  if (text.empty()) return absl::InvalidArgumentError("the text to append is empty");
  for (size_t i = 0; i < sections.size(); ++i) {
    const NewSection& section = sections[i];
    if (section.name.empty() || section.name.size() > kMaxSectionNameBytes ||
        !IsValidUtf8(section.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "section names must be 1 to ", kMaxSectionNameBytes, " bytes of UTF-8"));
    }
    if (section.text_offset < 0 || section.text_offset > static_cast<int64_t>(text.size()) ||
        section.token_offset < 0 || section.token_offset > static_cast<int64_t>(tokens.size()) ||
        (i > 0 && (section.text_offset < sections[i - 1].text_offset ||
                   section.token_offset <= sections[i - 1].token_offset))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "section '", section.name, "' is out of order or outside the appended text"));
    }
  }
  absl::MutexLock lock(&DocumentMutex(tenant, id));
  TOME_ASSIGN_OR_RETURN(DocumentRecord record, ReadRecord(tenant, id));
  rocksdb::WriteBatch batch;
  // Chunks are keyed by their starting offset, so each append adds keys after the last ones.
  for (size_t done = 0; done < text.size(); done += kTextChunkBytes) {
    const absl::string_view chunk = text.substr(done, kTextChunkBytes);
    TOME_RETURN_IF_ERROR(
        FromRocksDb(batch.Put(cf(Cf::kText),
                              ChunkKey(tenant, id, record.text_bytes + static_cast<int64_t>(done)),
                              rocksdb::Slice(chunk.data(), chunk.size())),
                    "adding text to a batch"));
  }
  for (size_t done = 0; done < tokens.size(); done += kTokenChunkTokens) {
    const std::string chunk = EncodeTokens(tokens.subspan(done, kTokenChunkTokens));
    TOME_RETURN_IF_ERROR(FromRocksDb(
        batch.Put(cf(Cf::kTokens),
                  ChunkKey(tenant, id, record.num_tokens + static_cast<int64_t>(done)), chunk),
        "adding tokens to a batch"));
  }
  for (const NewSection& section : sections) {
    const std::string value = EncodeSection(section.name, record.text_bytes + section.text_offset);
    TOME_RETURN_IF_ERROR(FromRocksDb(
        batch.Put(cf(Cf::kMeta), SectionKey(tenant, id, record.num_tokens + section.token_offset),
                  value),
        "adding a section to a batch"));
  }
  record.version += 1;
  record.text_bytes += static_cast<int64_t>(text.size());
  record.num_tokens += static_cast<int64_t>(tokens.size());
  record.status = DocumentStatus::kIngesting;
  record.error.clear();
  record.updated_micros = NowMicros();
  record.versions.push_back(
      {record.version, record.num_tokens, record.text_bytes, record.updated_micros});
  TOME_RETURN_IF_ERROR(PutRecord(record, &batch));
  TOME_RETURN_IF_ERROR(Write(&batch, absl::StrCat("appending text to ", DocName(tenant, id))));
  return record;
}

absl::StatusOr<std::vector<SectionInfo>> RocksDbContextStore::ListSections(TenantId tenant,
                                                                           DocumentId id) {
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckOpen());
  rocksdb::ManagedSnapshot managed(db_.get());
  rocksdb::ReadOptions read_options;
  read_options.snapshot = managed.snapshot();
  TOME_RETURN_IF_ERROR(ReadRecord(tenant, id, read_options.snapshot).status());
  const std::string prefix = SectionKey(tenant, id, 0).substr(0, kDocumentPrefixSize + 1);
  std::vector<SectionInfo> sections;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cf(Cf::kMeta)));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (it->key().size() != kSectionKeySize) continue;
    SectionInfo section;
    section.begin_token =
        static_cast<int64_t>(ReadBigEndian64(it->key().data() + kDocumentPrefixSize + 1));
    TOME_RETURN_IF_ERROR(DecodeSection(absl::string_view(it->value().data(), it->value().size()),
                                       &section.name, &section.begin_byte));
    sections.push_back(std::move(section));
  }
  TOME_RETURN_IF_ERROR(FromRocksDb(it->status(), "listing sections"));
  return sections;
}

absl::StatusOr<std::string> RocksDbContextStore::ReadText(TenantId tenant, DocumentId id) {
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckOpen());
  // Record and chunks at one snapshot: an append in between cannot tear the result.
  rocksdb::ManagedSnapshot managed(db_.get());
  const rocksdb::Snapshot* snapshot = managed.snapshot();
  TOME_ASSIGN_OR_RETURN(DocumentRecord record, ReadRecord(tenant, id, snapshot));
  const std::string begin = DocumentPrefix(tenant, id);
  const std::string end = DocumentPrefixEnd(tenant, id);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions read_options;
  read_options.snapshot = snapshot;
  read_options.iterate_upper_bound = &upper;
  std::string text;
  text.reserve(static_cast<size_t>(record.text_bytes));
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cf(Cf::kText)));
  for (it->Seek(begin); it->Valid(); it->Next()) {
    const absl::string_view key(it->key().data(), it->key().size());
    if (ChunkOffset(key) != static_cast<int64_t>(text.size())) {
      return absl::DataLossError(absl::StrCat("the text of ", DocName(tenant, id),
                                              " has a gap or overlap at byte ", text.size()));
    }
    text.append(it->value().data(), it->value().size());
  }
  TOME_RETURN_IF_ERROR(FromRocksDb(it->status(), "reading text"));
  if (static_cast<int64_t>(text.size()) != record.text_bytes) {
    return absl::DataLossError(absl::StrCat("the text of ", DocName(tenant, id), " has ",
                                            text.size(), " bytes; its record says ",
                                            record.text_bytes));
  }
  return text;
}

absl::Status RocksDbContextStore::ReadChunkRange(
    Cf family, TenantId tenant, DocumentId id, const rocksdb::Snapshot* snapshot, int64_t begin,
    int64_t end, size_t unit_bytes, absl::string_view damaged, absl::string_view unit,
    const std::function<void(int64_t, const char*, int64_t)>& copy) {
  const std::string lower_key = DocumentPrefix(tenant, id);
  const std::string upper_key = DocumentPrefixEnd(tenant, id);
  rocksdb::Slice lower(lower_key);
  rocksdb::Slice upper(upper_key);
  rocksdb::ReadOptions read_options;
  read_options.snapshot = snapshot;
  read_options.iterate_lower_bound = &lower;
  read_options.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cf(family)));
  // The chunk holding `begin` is the last one starting at or before it.
  it->SeekForPrev(ChunkKey(tenant, id, begin));
  if (!it->Valid()) it->Seek(lower_key);
  int64_t next = begin;  // the first unit not yet copied
  for (; it->Valid() && next < end; it->Next()) {
    const int64_t start = ChunkOffset(absl::string_view(it->key().data(), it->key().size()));
    const size_t size = it->value().size();
    if (start < 0 || start > next || size % unit_bytes != 0) {
      return absl::DataLossError(absl::StrCat(damaged, " near ", unit, " ", next));
    }
    const int64_t chunk_end = start + static_cast<int64_t>(size / unit_bytes);
    if (chunk_end <= next) continue;
    const int64_t copy_end = std::min(end, chunk_end);
    copy(next, it->value().data() + (next - start) * unit_bytes, copy_end - next);
    next = copy_end;
  }
  TOME_RETURN_IF_ERROR(FromRocksDb(it->status(), absl::StrCat("reading ", unit, "s")));
  if (next < end) {
    return absl::DataLossError(absl::StrCat(damaged, " near ", unit, " ", next,
                                            ": the stored chunks end there, before ", unit,
                                            " ", end));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RocksDbContextStore::ReadTextRange(TenantId tenant, DocumentId id,
                                                               int64_t begin, int64_t end) {
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckOpen());
  if (begin < 0 || end < begin) {
    return absl::InvalidArgumentError(absl::StrCat("invalid byte range [", begin, ", ", end, ")"));
  }
  rocksdb::ManagedSnapshot managed(db_.get());
  TOME_ASSIGN_OR_RETURN(DocumentRecord record, ReadRecord(tenant, id, managed.snapshot()));
  end = std::min(end, record.text_bytes);
  std::string text;
  if (begin >= end) return text;
  TOME_RETURN_IF_ERROR(ReadChunkRange(
      Cf::kText, tenant, id, managed.snapshot(), begin, end, 1,
      absl::StrCat("the text of ", DocName(tenant, id), " is damaged"), "byte",
      [&](int64_t, const char* data, int64_t n) { text.append(data, static_cast<size_t>(n)); }));
  return text;
}

absl::StatusOr<std::vector<int32_t>> RocksDbContextStore::ReadTokens(TenantId tenant, DocumentId id,
                                                                     int64_t begin, int64_t end) {
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckOpen());
  if (begin < 0 || end < begin) {
    return absl::InvalidArgumentError(absl::StrCat("invalid token range [", begin, ", ", end, ")"));
  }
  rocksdb::ManagedSnapshot managed(db_.get());
  TOME_ASSIGN_OR_RETURN(DocumentRecord record, ReadRecord(tenant, id, managed.snapshot()));
  end = std::min(end, record.num_tokens);
  std::vector<int32_t> tokens;
  if (begin >= end) return tokens;
  tokens.resize(static_cast<size_t>(end - begin));
  TOME_RETURN_IF_ERROR(ReadChunkRange(
      Cf::kTokens, tenant, id, managed.snapshot(), begin, end, sizeof(int32_t),
      absl::StrCat("the token ids of ", DocName(tenant, id), " are damaged"), "token",
      [&](int64_t first, const char* data, int64_t n) {
        DecodeTokens(data, static_cast<size_t>(n), tokens.data() + (first - begin));
      }));
  return tokens;
}

absl::Status RocksDbContextStore::SetStatus(TenantId tenant, DocumentId id, DocumentStatus status,
                                            absl::string_view error) {
  TOME_RETURN_IF_ERROR(RecoverIfNeeded());
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckWritable());
  if (static_cast<int>(status) < static_cast<int>(DocumentStatus::kEmpty) ||
      static_cast<int>(status) > static_cast<int>(DocumentStatus::kFailed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown document status ", static_cast<int>(status)));
  }
  absl::MutexLock lock(&DocumentMutex(tenant, id));
  TOME_ASSIGN_OR_RETURN(DocumentRecord record, ReadRecord(tenant, id));
  record.status = status;
  record.error = status == DocumentStatus::kFailed ? std::string(error) : std::string();
  record.updated_micros = NowMicros();
  rocksdb::WriteBatch batch;
  TOME_RETURN_IF_ERROR(PutRecord(record, &batch));
  return Write(&batch, absl::StrCat("setting the status of ", DocName(tenant, id)));
}

absl::Status RocksDbContextStore::AddState(TenantId tenant, DocumentId id, const StateKey& key,
                                           absl::string_view bytes,
                                           rocksdb::WriteBatch* batch) const {
  // Column family ids, not handles, go into the batch: it stays valid across a reopen.
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_ASSIGN_OR_RETURN(Cf family, CfForStateKind(key.kind));
  TOME_RETURN_IF_ERROR(ValidateStateKey(key));
  return FromRocksDb(batch->Put(cf(family), EncodeStateKey(tenant, id, key),
                                EncodeStateValue(fingerprint_, bytes)),
                     "adding a state record to a checkpoint");
}

std::unique_ptr<ContextStore::Checkpoint> RocksDbContextStore::BeginCheckpoint(TenantId tenant,
                                                                               DocumentId id) {
  return std::make_unique<RocksDbCheckpoint>(this, tenant, id);
}

absl::StatusOr<DocumentRecord> RocksDbContextStore::CommitCheckpoint(Checkpoint& checkpoint,
                                                                     int64_t state_tokens) {
  TOME_RETURN_IF_ERROR(RecoverIfNeeded());
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckWritable());
  auto* cp = dynamic_cast<RocksDbCheckpoint*>(&checkpoint);
  if (cp == nullptr || cp->store_ != this) {
    return absl::InvalidArgumentError("the checkpoint was not begun on this store");
  }
  if (cp->committed_) return absl::FailedPreconditionError("the checkpoint was already committed");
  TOME_RETURN_IF_ERROR(cp->status_);
  if (state_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("state_tokens must not be negative (", state_tokens, ")"));
  }
  // Under the document's mutex: no append or delete can slip between the check of the record
  // and the write of the state and the new watermark.
  absl::MutexLock lock(&DocumentMutex(cp->tenant_, cp->id_));
  TOME_ASSIGN_OR_RETURN(DocumentRecord record, ReadRecord(cp->tenant_, cp->id_));
  if (state_tokens > record.num_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint at ", state_tokens, " tokens is past the end of ",
                     DocName(cp->tenant_, cp->id_), " (", record.num_tokens, " tokens)"));
  }
  record.state_tokens = state_tokens;
  record.status =
      state_tokens == record.num_tokens ? DocumentStatus::kReady : DocumentStatus::kIngesting;
  if (record.checkpoints.empty() || record.checkpoints.back() < state_tokens) {
    record.checkpoints.push_back(state_tokens);
  }
  record.error.clear();
  record.updated_micros = NowMicros();
  // The record joins the state in the same batch; taken out again if the write fails, so the
  // checkpoint can be committed again.
  cp->batch_.SetSavePoint();
  absl::Status status = absl::OkStatus();
  for (const StateKey& key : cp->keys_) {
    status = DeleteSuperseded(cp->tenant_, cp->id_, key, &cp->batch_);
    if (!status.ok()) break;
  }
  if (status.ok()) status = PutRecord(record, &cp->batch_);
  if (status.ok()) {
    status = Write(&cp->batch_,
                   absl::StrCat("committing a checkpoint of ", DocName(cp->tenant_, cp->id_)));
  }
  if (!status.ok()) {
    cp->batch_.RollbackToSavePoint().PermitUncheckedError();
    return status;
  }
  cp->committed_ = true;
  cp->batch_.Clear();
  return record;
}

absl::Status RocksDbContextStore::DeleteSuperseded(TenantId tenant, DocumentId id,
                                                   const StateKey& key,
                                                   rocksdb::WriteBatch* batch) {
  TOME_ASSIGN_OR_RETURN(Cf family, CfForStateKind(key.kind));
  const std::string lower = StateKeyRowsZero(tenant, id, key);
  const std::string upper = EncodeStateKey(tenant, id, key);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cf(family)));
  for (it->Seek(lower); it->Valid(); it->Next()) {
    TOME_RETURN_IF_ERROR(
        FromRocksDb(batch->Delete(cf(family), it->key()), "deleting a superseded record"));
  }
  return FromRocksDb(it->status(), "finding superseded records");
}

absl::StatusOr<std::string> RocksDbContextStore::GetState(TenantId tenant, DocumentId id,
                                                          const StateKey& key) {
  return std::move(GetStates(tenant, id, absl::MakeConstSpan(&key, 1))[0]);
}

std::vector<absl::StatusOr<std::string>> RocksDbContextStore::GetStates(
    TenantId tenant, DocumentId id, absl::Span<const StateKey> keys) {
  std::vector<absl::StatusOr<std::string>> out(keys.size(), absl::InternalError("not read"));
  std::vector<bool> visited(keys.size(), false);
  const absl::Status status =
      VisitStates(tenant, id, keys, [&](size_t i, absl::StatusOr<absl::string_view> record) {
        visited[i] = true;
        if (record.ok()) {
          out[i] = std::string(*record);
        } else {
          out[i] = record.status();
        }
        return absl::OkStatus();
      });
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!visited[i]) out[i] = status.ok() ? absl::InternalError("not read") : status;
  }
  return out;
}

absl::Status RocksDbContextStore::VisitStates(TenantId tenant, DocumentId id,
                                              absl::Span<const StateKey> keys, StateVisitor visit) {
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckOpen());
  auto where = [&](size_t i) {
    return absl::StrCat(DocName(tenant, id), ", state record ", StateKeyDebugString(keys[i]));
  };
  // The keys of a family without blob files (summary pages) go to RocksDB in one MultiGet:
  // one pass over the files for many keys, faster than a Get each (a 1M-token document's
  // pages open 1.2-4.5x faster cold). Blob-file families (KV blocks, Lightning states) are read with one Get
  // per key, several at once on the read pool: RocksDB 7.8's MultiGet of blob values
  // measured 2.6x (cold) to 4.5x (page cache) slower than single Gets
  // (tests/bench/store_read_bench.cc, docs/PERFORMANCE.md).
  std::vector<std::string> encoded(keys.size());
  std::array<std::vector<size_t>, kNumCfs> by_family;
  for (size_t i = 0; i < keys.size(); ++i) {
    absl::StatusOr<Cf> family = CfForStateKind(keys[i].kind);
    absl::Status valid = family.ok() ? ValidateStateKey(keys[i]) : family.status();
    if (!valid.ok()) {
      TOME_RETURN_IF_ERROR(visit(i, valid));
      continue;
    }
    encoded[i] = EncodeStateKey(tenant, id, keys[i]);
    by_family[static_cast<int>(*family)].push_back(i);
  }
  for (int c = 0; c < kNumCfs; ++c) {
    const std::vector<size_t>& index = by_family[c];
    if (index.empty()) continue;
    std::vector<rocksdb::Slice> slices;
    slices.reserve(index.size());
    for (size_t i : index) slices.emplace_back(encoded[i]);
    std::vector<rocksdb::PinnableSlice> values(index.size());
    std::vector<rocksdb::Status> statuses(index.size());
    if (CfUsesBlobFiles(static_cast<Cf>(c))) {
      read_pool_->Run(index.size(), [&](size_t j) {
        statuses[j] = db_->Get(rocksdb::ReadOptions(), cf_[c], slices[j], &values[j]);
      });
    } else {
      db_->MultiGet(rocksdb::ReadOptions(), cf_[c], index.size(), slices.data(), values.data(),
                    statuses.data());
    }
    for (size_t j = 0; j < index.size(); ++j) {
      const size_t i = index[j];
      std::string longer;  // the same block or page with more rows
      absl::string_view value(values[j].data(), values[j].size());
      if (statuses[j].IsNotFound()) {
        // The first key after keys[i] within the same block or page.
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_[c]));
        it->Seek(encoded[i]);
        if (absl::Status read = FromRocksDb(it->status(), absl::StrCat("reading ", where(i)));
            !read.ok()) {
          TOME_RETURN_IF_ERROR(visit(i, read));
          continue;
        }
        if (!it->Valid() || it->key().size() != kStateKeySize ||
            std::memcmp(it->key().data(), encoded[i].data(), kStateKeyBlockPrefixSize) != 0) {
          TOME_RETURN_IF_ERROR(
              visit(i, absl::NotFoundError(absl::StrCat(where(i), ": not found"))));
          continue;
        }
        longer.assign(it->value().data(), it->value().size());
        value = longer;
      } else if (!statuses[j].ok()) {
        TOME_RETURN_IF_ERROR(
            visit(i, FromRocksDb(statuses[j], absl::StrCat("reading ", where(i)))));
        continue;
      }
      absl::StatusOr<absl::string_view> payload = DecodeStateValue(value, fingerprint_);
      if (!payload.ok()) {
        payload = absl::Status(payload.status().code(),
                               absl::StrCat(where(i), ": ", payload.status().message()));
      }
      TOME_RETURN_IF_ERROR(visit(i, payload));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> RocksDbContextStore::CollectGarbage() {
  TOME_RETURN_IF_ERROR(RecoverIfNeeded());
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckWritable());
  std::set<std::pair<TenantId, DocumentId>> cleaned;
  rocksdb::WriteBatch batch;
  for (Cf c : kAllCfs) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(c)));
    it->SeekToFirst();
    while (it->Valid()) {
      TenantId tenant = 0;
      DocumentId id = 0;
      const absl::string_view key(it->key().data(), it->key().size());
      if (!key.empty() && (key[0] == kOwnerKeyTag || key[0] == kServiceRecordTag)) {
        break;  // owner index and service records sort after every document key
      }
      if (!ParseDocumentPrefix(key, &tenant, &id)) {  // the id counter
        it->Next();
        continue;
      }
      const std::string end = DocumentPrefixEnd(tenant, id);
      absl::StatusOr<DocumentRecord> record = ReadRecord(tenant, id);
      if (absl::IsNotFound(record.status())) {
        TOME_RETURN_IF_ERROR(FromRocksDb(batch.DeleteRange(cf(c), DocumentPrefix(tenant, id), end),
                                         "adding a garbage range to a batch"));
        cleaned.insert({tenant, id});
      }
      if (end.empty()) break;
      it->Seek(end);
    }
    TOME_RETURN_IF_ERROR(FromRocksDb(it->status(), "scanning for garbage"));
  }
  if (batch.Count() > 0) TOME_RETURN_IF_ERROR(Write(&batch, "deleting orphaned data"));
  return static_cast<int64_t>(cleaned.size());
}

absl::StatusOr<TenantId> RocksDbContextStore::DocumentOwner(DocumentId id) {
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckOpen());
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(Cf::kMeta), DocumentOwnerKey(id), &value);
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("document ", id, " not found"));
  TOME_RETURN_IF_ERROR(FromRocksDb(s, absl::StrCat("finding the owner of document ", id)));
  if (value.size() != 8) {
    return absl::DataLossError(absl::StrCat("the owner index of document ", id, " is damaged"));
  }
  return ReadBigEndian64(value.data());
}

absl::StatusOr<DocumentRecord> RocksDbContextStore::SetSharing(TenantId tenant, DocumentId id,
                                                               bool is_public,
                                                               std::vector<TenantId> shared_with) {
  TOME_RETURN_IF_ERROR(RecoverIfNeeded());
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckWritable());
  absl::MutexLock lock(&DocumentMutex(tenant, id));
  TOME_ASSIGN_OR_RETURN(DocumentRecord record, ReadRecord(tenant, id));
  std::sort(shared_with.begin(), shared_with.end());
  shared_with.erase(std::unique(shared_with.begin(), shared_with.end()), shared_with.end());
  record.is_public = is_public;
  record.shared_with = std::move(shared_with);
  record.updated_micros = NowMicros();
  rocksdb::WriteBatch batch;
  TOME_RETURN_IF_ERROR(PutRecord(record, &batch));
  TOME_RETURN_IF_ERROR(Write(&batch, absl::StrCat("sharing ", DocName(tenant, id))));
  return record;
}

absl::StatusOr<DocumentRecord> RocksDbContextStore::ResetState(TenantId tenant, DocumentId id) {
  TOME_RETURN_IF_ERROR(RecoverIfNeeded());
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckWritable());
  absl::MutexLock lock(&DocumentMutex(tenant, id));
  TOME_ASSIGN_OR_RETURN(DocumentRecord record, ReadRecord(tenant, id));
  const std::string begin = DocumentPrefix(tenant, id);
  const std::string end = DocumentPrefixEnd(tenant, id);  // not empty: the record exists
  rocksdb::WriteBatch batch;
  for (Cf c : {Cf::kState, Cf::kKv, Cf::kSummary}) {
    TOME_RETURN_IF_ERROR(
        FromRocksDb(batch.DeleteRange(cf(c), begin, end), "adding a range deletion to a batch"));
  }
  record.state_tokens = 0;
  record.checkpoints.clear();
  record.status = record.num_tokens > 0 ? DocumentStatus::kIngesting : DocumentStatus::kEmpty;
  record.error.clear();
  record.updated_micros = NowMicros();
  TOME_RETURN_IF_ERROR(PutRecord(record, &batch));
  TOME_RETURN_IF_ERROR(
      Write(&batch, absl::StrCat("discarding the model state of ", DocName(tenant, id))));
  return record;
}

namespace {

absl::Status CheckRecordId(absl::string_view id) {
  if (id.size() > 256) return absl::InvalidArgumentError("record ids are at most 256 bytes");
  return absl::OkStatus();
}

}  // namespace

absl::Status RocksDbContextStore::PutRecord(RecordKind kind, absl::string_view id,
                                            absl::string_view value) {
  TOME_RETURN_IF_ERROR(CheckRecordId(id));
  TOME_RETURN_IF_ERROR(RecoverIfNeeded());
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckWritable());
  rocksdb::WriteBatch batch;
  TOME_RETURN_IF_ERROR(FromRocksDb(
      batch.Put(cf(Cf::kMeta), ServiceRecordKey(kind, id), rocksdb::Slice(value.data(), value.size())),
      "adding a record to a batch"));
  return Write(&batch, "writing a service record");
}

absl::StatusOr<std::string> RocksDbContextStore::GetRecord(RecordKind kind, absl::string_view id) {
  TOME_RETURN_IF_ERROR(CheckRecordId(id));
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckOpen());
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), cf(Cf::kMeta), ServiceRecordKey(kind, id), &value);
  if (s.IsNotFound()) return absl::NotFoundError("record not found");
  TOME_RETURN_IF_ERROR(FromRocksDb(s, "reading a service record"));
  return value;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> RocksDbContextStore::ListRecords(
    RecordKind kind, absl::string_view id_prefix) {
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckOpen());
  const std::string prefix = ServiceRecordKey(kind, id_prefix);
  const size_t id_start = ServiceRecordKey(kind, "").size();
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(Cf::kMeta)));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    out.emplace_back(std::string(it->key().data() + id_start, it->key().size() - id_start),
                     it->value().ToString());
  }
  TOME_RETURN_IF_ERROR(FromRocksDb(it->status(), "listing service records"));
  return out;
}

absl::Status RocksDbContextStore::DeleteRecord(RecordKind kind, absl::string_view id) {
  TOME_RETURN_IF_ERROR(CheckRecordId(id));
  TOME_RETURN_IF_ERROR(RecoverIfNeeded());
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckWritable());
  rocksdb::WriteBatch batch;
  TOME_RETURN_IF_ERROR(FromRocksDb(batch.Delete(cf(Cf::kMeta), ServiceRecordKey(kind, id)),
                                   "adding a record deletion to a batch"));
  return Write(&batch, "deleting a service record");
}

absl::StatusOr<int64_t> RocksDbContextStore::RangeBytes(Cf c, const std::string& begin,
                                                        const std::string& end) {
  const rocksdb::Range range(begin, end);
  rocksdb::SizeApproximationOptions memtables;
  memtables.include_memtables = true;
  memtables.include_files = false;
  rocksdb::SizeApproximationOptions files;
  uint64_t memtable_bytes = 0;
  uint64_t file_bytes = 0;
  TOME_RETURN_IF_ERROR(FromRocksDb(
      db_->GetApproximateSizes(memtables, cf(c), &range, 1, &memtable_bytes), "sizing memtables"));
  TOME_RETURN_IF_ERROR(
      FromRocksDb(db_->GetApproximateSizes(files, cf(c), &range, 1, &file_bytes), "sizing files"));
  double blob_bytes = 0;
  if (CfUsesBlobFiles(c) && file_bytes > 0) {
    // Table files hold only small references to blobs, which no range size counts. Give the
    // range the share of the family's live blob bytes that it has of its table bytes (the
    // references are all about the same size).
    rocksdb::ColumnFamilyMetaData meta;
    db_->GetColumnFamilyMetaData(cf(c), &meta);
    uint64_t live_blob_bytes = 0;
    for (const rocksdb::BlobMetaData& blob : meta.blob_files) {
      live_blob_bytes +=
          blob.total_blob_bytes - std::min(blob.garbage_blob_bytes, blob.total_blob_bytes);
    }
    if (meta.size > 0) {
      blob_bytes = static_cast<double>(live_blob_bytes) *
                   std::min(1.0, static_cast<double>(file_bytes) / static_cast<double>(meta.size));
    }
  }
  return static_cast<int64_t>(memtable_bytes + file_bytes) + static_cast<int64_t>(blob_bytes);
}

absl::StatusOr<int64_t> RocksDbContextStore::DocumentBytes(TenantId tenant, DocumentId id) {
  absl::ReaderMutexLock db_lock(&db_mu_);
  TOME_RETURN_IF_ERROR(CheckOpen());
  TOME_RETURN_IF_ERROR(ReadRecord(tenant, id).status());
  const std::string begin = DocumentPrefix(tenant, id);
  const std::string end = DocumentPrefixEnd(tenant, id);
  int64_t total = 0;
  for (Cf c : kAllCfs) {
    TOME_ASSIGN_OR_RETURN(int64_t bytes, RangeBytes(c, begin, end));
    total += bytes;
  }
  return total;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ContextStore>> ContextStore::Open(const std::string& path,
                                                                 const StoreOptions& options) {
  return RocksDbContextStore::Open(path, options);
}

}  // namespace tome::storage
