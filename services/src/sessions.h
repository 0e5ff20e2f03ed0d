// Conversation sessions: each is a document version plus the session's own turns (the
// question and answer tokens after the document), persisted as two service records so a
// session survives a restart. The model state is never stored per session: it is the
// document's stored state plus the turns, re-run when the session is not in memory.
// Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "session_record.h"
#include "tome/engine/engine.h"
#include "tome/storage/context_store.h"

namespace tome::services {

class SessionStore {
 public:
  explicit SessionStore(storage::ContextStore* store) : store_(store) {}

  // A new random id ("s" + 16 hex digits).
  static absl::StatusOr<std::string> NewId();

  absl::Status Put(const SessionInfo& session);
  // NotFound unless the session exists, belongs to `tenant` and has not expired at `now`.
  absl::StatusOr<SessionInfo> Get(storage::TenantId tenant, const std::string& id,
                                  int64_t now_micros);
  // The tenant's live sessions (of `document` if nonzero), newest first.
  absl::StatusOr<std::vector<SessionInfo>> List(storage::TenantId tenant,
                                                storage::DocumentId document, int64_t now_micros);
  absl::Status Delete(const std::string& id);
  // Deletes every session expired at `now` (or whose document is gone, per `document_exists`)
  // and returns how many.
  absl::StatusOr<int64_t> CollectExpired(int64_t now_micros);

 private:
  absl::StatusOr<SessionInfo> Read(const std::string& id, bool with_tail);
  storage::ContextStore* store_;
};

// The engine state of recently used sessions (after their last turn), least recently used
// evicted beyond `capacity`, plus a mutex per session so its turns run one at a time.
class SessionStates {
 public:
  explicit SessionStates(size_t capacity) : capacity_(capacity) {}
  std::shared_ptr<engine::Sequence> Get(const std::string& id, int64_t num_tokens);
  void Put(const std::string& id, std::shared_ptr<engine::Sequence> sequence);
  void Erase(const std::string& id);
  std::shared_ptr<std::mutex> TurnLock(const std::string& id);

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::list<std::string> lru_;
  std::map<std::string, std::pair<std::shared_ptr<engine::Sequence>,
                                  std::list<std::string>::iterator>> states_;
  std::map<std::string, std::weak_ptr<std::mutex>> locks_;
};

}  // namespace tome::services
