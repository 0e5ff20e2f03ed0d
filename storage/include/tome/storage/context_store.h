// The context store: Tome's durable record of documents (metadata, text, token ids) and of
// the model state computed from them (Lightning states, sparse-layer KV blocks, block
// summaries), on RocksDB. It knows bytes and keys, not what the state means.
//
// Every state value carries a format version, the model fingerprint it was computed with,
// and a checksum; reads verify all three. A checkpoint (state records + the new watermark)
// commits in one WriteBatch: readers see it whole or not at all.
//
// Thread-safe: all methods may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace rocksdb {
class Env;
}

namespace tome::storage {

using TenantId = uint64_t;
using DocumentId = uint64_t;

// Tenant of every document until tenancy exists (issue 5).
inline constexpr TenantId kDefaultTenant = 1;

// The smallest id CreateDocumentWithId accepts (2^32): the store's own counter stays below.
inline constexpr DocumentId kMinChosenDocumentId = DocumentId{1} << 32;

struct StoreOptions {
  bool create_if_missing = true;
  // Identifies the model (hash of its config and weights). Stored in every state value;
  // reading a value written under another fingerprint fails with FailedPrecondition.
  std::string model_fingerprint;
  // RocksDB block cache for all column families.
  int64_t block_cache_bytes = int64_t{256} << 20;
  // Tests: an in-memory or fault-injecting Env (not owned). nullptr = the default Env.
  rocksdb::Env* env = nullptr;
  // fsync every write (WAL). Off in tests for speed.
  bool sync_writes = true;
  // Threads (besides the caller) that read KV blocks in parallel in GetStates: several
  // requests in flight (0..64; 0 reads one at a time).
  int read_threads = 8;
};

enum class DocumentStatus {
  kEmpty = 0,      // created, no text yet
  kIngesting = 1,  // text appended whose state is not yet committed (state_tokens < num_tokens)
  kReady = 2,      // state committed for all tokens
  kFailed = 3,     // ingestion failed; `error` says why
};

// One version of a document: its extent after the AppendText that created it. A version's
// text, tokens and model state stay readable until the document is deleted.
struct VersionInfo {
  int64_t version = 0;
  int64_t num_tokens = 0;
  int64_t text_bytes = 0;
  int64_t created_micros = 0;
};

// A named part of a document (a file of a codebase, a chapter of a book). It runs from its
// begin offsets to the next section's, or to the document's end.
struct SectionInfo {
  std::string name;
  int64_t begin_token = 0;
  int64_t begin_byte = 0;
};

// A section starting inside the text of one AppendText call, at offsets relative to it.
struct NewSection {
  std::string name;
  int64_t text_offset = 0;
  int64_t token_offset = 0;
};

struct DocumentRecord {
  TenantId tenant = 0;
  DocumentId id = 0;
  std::string name;
  int64_t created_micros = 0;  // Unix time
  int64_t updated_micros = 0;
  int64_t version = 0;         // +1 per AppendText
  int64_t text_bytes = 0;      // bytes of text appended so far
  int64_t num_tokens = 0;      // token ids of that text
  int64_t state_tokens = 0;    // tokens whose model state is committed (the watermark)
  DocumentStatus status = DocumentStatus::kEmpty;
  std::string error;           // for kFailed
  std::vector<VersionInfo> versions;  // one per AppendText, oldest first
  // Read access for other tenants: everyone (public) or the listed tenants.
  bool is_public = false;
  std::vector<TenantId> shared_with;
  // Token offsets at which a checkpoint (Lightning states + the blocks they need) was
  // committed, ascending; the model state at any offset is restored from the nearest one at
  // or before it.
  std::vector<int64_t> checkpoints;
};

// One stored state record (mirrors engine::StateRecordKey without depending on it).
struct StateKey {
  uint8_t kind = 0;
  int32_t layer = 0;
  int32_t head = 0;
  int64_t index = 0;
  int64_t rows = 0;
};

// Kinds of small service records kept beside the documents (tenants, API keys, sessions);
// services/ encodes their values. Each kind is its own key space of string ids.
enum class RecordKind : uint8_t {
  kTenant = 1,
  kTenantName = 2,
  kApiKey = 3,
  kApiKeyId = 4,
  kSession = 5,
  kSessionTail = 6,
  kServer = 7,
};

class ContextStore {
 public:
  // Opens (creating if allowed) the store at `path`. InvalidArgument for an empty
  // fingerprint; Internal/IOError-derived codes with RocksDB's message otherwise.
  static absl::StatusOr<std::unique_ptr<ContextStore>> Open(const std::string& path,
                                                            const StoreOptions& options);
  virtual ~ContextStore() = default;

  // --- documents ----------------------------------------------------------------------------
  // InvalidArgument for an empty or over-long (> 256 bytes) name.
  virtual absl::StatusOr<DocumentRecord> CreateDocument(TenantId tenant,
                                                        absl::string_view name) = 0;
  // As CreateDocument, under an id the caller chose (cluster mode: routers pick cluster-wide
  // ids, at least kMinChosenDocumentId so that they never meet the store's own counter).
  // InvalidArgument for a smaller id, AlreadyExists if a document has that id.
  virtual absl::StatusOr<DocumentRecord> CreateDocumentWithId(TenantId tenant, DocumentId id,
                                                              absl::string_view name) = 0;
  // NotFound if absent (or deleted).
  virtual absl::StatusOr<DocumentRecord> GetDocument(TenantId tenant, DocumentId id) = 0;
  // The tenant's documents with id > after_id, in id order, at most `limit`.
  virtual absl::StatusOr<std::vector<DocumentRecord>> ListDocuments(TenantId tenant,
                                                                    DocumentId after_id,
                                                                    int limit) = 0;
  // Removes the document and everything stored for it (every column family, one range each).
  virtual absl::Status DeleteDocument(TenantId tenant, DocumentId id) = 0;
  // The tenant that owns document `id` (ids are unique across tenants). NotFound if none.
  virtual absl::StatusOr<TenantId> DocumentOwner(DocumentId id) = 0;
  // Sets who besides the owner may read the document.
  virtual absl::StatusOr<DocumentRecord> SetSharing(TenantId tenant, DocumentId id,
                                                    bool is_public,
                                                    std::vector<TenantId> shared_with) = 0;

  // Appends `text` and its token ids, and the sections that start inside them, in one
  // WriteBatch: version + 1, status kIngesting. NotFound if the document does not exist;
  // InvalidArgument for sections out of the appended range, out of order, or unnamed.
  virtual absl::StatusOr<DocumentRecord> AppendText(TenantId tenant, DocumentId id,
                                                    absl::string_view text,
                                                    absl::Span<const int32_t> tokens,
                                                    absl::Span<const NewSection> sections = {}) = 0;
  // The document's sections in order.
  virtual absl::StatusOr<std::vector<SectionInfo>> ListSections(TenantId tenant,
                                                                DocumentId id) = 0;
  // The whole text appended so far.
  virtual absl::StatusOr<std::string> ReadText(TenantId tenant, DocumentId id) = 0;
  // Bytes [begin, end) of the text (end clamped to text_bytes): copies a large document in
  // pieces without reading it whole each time.
  virtual absl::StatusOr<std::string> ReadTextRange(TenantId tenant, DocumentId id,
                                                    int64_t begin, int64_t end) = 0;
  // Token ids [begin, end) (end clamped to num_tokens).
  virtual absl::StatusOr<std::vector<int32_t>> ReadTokens(TenantId tenant, DocumentId id,
                                                          int64_t begin, int64_t end) = 0;
  // Sets status (and error text for kFailed).
  virtual absl::Status SetStatus(TenantId tenant, DocumentId id, DocumentStatus status,
                                 absl::string_view error) = 0;

  // --- model state --------------------------------------------------------------------------
  // Collects state records; nothing is visible until CommitCheckpoint.
  class Checkpoint {
   public:
    virtual ~Checkpoint() = default;
    virtual void Put(const StateKey& key, absl::string_view bytes) = 0;
    virtual int64_t num_records() const = 0;
    virtual int64_t num_bytes() const = 0;
  };
  virtual std::unique_ptr<Checkpoint> BeginCheckpoint(TenantId tenant, DocumentId id) = 0;
  // Writes the records and sets state_tokens (and kReady when it reaches num_tokens) in one
  // WriteBatch, adding state_tokens to the record's checkpoints. Records of a block or page
  // that this checkpoint supersedes (same kind, layer, head and index, fewer rows) are deleted
  // in the same batch: GetState serves shorter reads from the longer record. NotFound if the
  // document was deleted meanwhile; InvalidArgument if state_tokens > num_tokens.
  virtual absl::StatusOr<DocumentRecord> CommitCheckpoint(Checkpoint& checkpoint,
                                                          int64_t state_tokens) = 0;
  // The record under `key`, or, if there is none, the record of the same kind, layer, head and
  // index with the fewest rows above key.rows (a block or page only grows, so its longer
  // record starts with the shorter one's rows). NotFound if neither exists; DataLoss on a
  // checksum or format mismatch; FailedPrecondition if the record was written by a different
  // model (fingerprint mismatch).
  virtual absl::StatusOr<std::string> GetState(TenantId tenant, DocumentId id,
                                               const StateKey& key) = 0;
  // GetState of each key, in order, read together (a cold follow-up question reads
  // thousands of blocks and summary pages: one batched lookup instead of one each).
  virtual std::vector<absl::StatusOr<std::string>> GetStates(TenantId tenant, DocumentId id,
                                                             absl::Span<const StateKey> keys) = 0;
  // GetStates without copying the records: `visit(i, record)` for each key once, in any
  // order, with what GetStates would return for keys[i] (the bytes valid only during that
  // call). Returns the first error `visit` returns (keys not yet visited then stay so), or
  // an error of the store itself (closed, say) with keys left unvisited.
  using StateVisitor = absl::FunctionRef<absl::Status(size_t, absl::StatusOr<absl::string_view>)>;
  virtual absl::Status VisitStates(TenantId tenant, DocumentId id, absl::Span<const StateKey> keys,
                                   StateVisitor visit) = 0;

  // Discards the document's model state (every Lightning state, KV block and summary record)
  // and its checkpoints in one WriteBatch: state_tokens becomes 0 and the status kIngesting
  // (kEmpty without text), the error is cleared. Text, tokens, versions and sections stay, so
  // the state can be computed again from them (a damaged state, or another model's). NotFound
  // if absent.
  virtual absl::StatusOr<DocumentRecord> ResetState(TenantId tenant, DocumentId id) = 0;

  // --- service records ----------------------------------------------------------------------
  // Small values under (kind, id), written and read whole; `id` is at most 256 bytes.
  virtual absl::Status PutRecord(RecordKind kind, absl::string_view id,
                                 absl::string_view value) = 0;
  // NotFound if absent.
  virtual absl::StatusOr<std::string> GetRecord(RecordKind kind, absl::string_view id) = 0;
  // All (id, value) pairs of `kind` whose id starts with `id_prefix`, in id order.
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListRecords(
      RecordKind kind, absl::string_view id_prefix) = 0;
  virtual absl::Status DeleteRecord(RecordKind kind, absl::string_view id) = 0;

  // Deletes data left by documents whose record is gone (in case a crash ever separated
  // them; writes are atomic, so this finds nothing in normal operation). Returns the number
  // of documents cleaned. Also runs when the store opens.
  virtual absl::StatusOr<int64_t> CollectGarbage() = 0;

  // Approximate bytes on disk for everything of the document.
  virtual absl::StatusOr<int64_t> DocumentBytes(TenantId tenant, DocumentId id) = 0;
};

}  // namespace tome::storage
