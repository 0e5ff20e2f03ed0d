#include "sessions.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "tome/base/status_macros.h"

namespace tome::services {
using storage::RecordKind;

absl::StatusOr<std::string> SessionStore::NewId() {
  unsigned char bytes[8];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError("the system random generator failed");
  }
  return absl::StrCat(
      "s", absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(bytes), 8)));
}

absl::Status SessionStore::Put(const SessionInfo& s) {
  // The tail first: a record never points at a missing or shorter tail.
  TOME_RETURN_IF_ERROR(
      store_->PutRecord(RecordKind::kSessionTail, s.id, EncodeSessionTail(s.tail)));
  return store_->PutRecord(RecordKind::kSession, s.id, EncodeSessionRecord(s));
}

absl::StatusOr<SessionInfo> SessionStore::Read(const std::string& id, bool with_tail) {
  TOME_ASSIGN_OR_RETURN(std::string value, store_->GetRecord(RecordKind::kSession, id));
  int64_t tail_tokens = 0;
  TOME_ASSIGN_OR_RETURN(SessionInfo s, DecodeSessionRecord(id, value, &tail_tokens));
  if (with_tail) {
    TOME_ASSIGN_OR_RETURN(std::string tail, store_->GetRecord(RecordKind::kSessionTail, id));
    auto decoded = DecodeSessionTail(tail, tail_tokens);
    if (!decoded.ok()) {
      return absl::DataLossError(absl::StrCat("session ", id, " lost turns: ",
                                              decoded.status().message()));
    }
    s.tail = std::move(decoded).value();
  } else {
    s.tail.resize(tail_tokens);  // the size only
  }
  return s;
}

absl::StatusOr<SessionInfo> SessionStore::Get(storage::TenantId tenant, const std::string& id,
                                              int64_t now_micros) {
  auto s = Read(id, /*with_tail=*/true);
  // Another tenant's session reads exactly like a missing one.
  if (!s.ok() || s->tenant != tenant || s->expire_micros() < now_micros) {
    if (s.ok() || absl::IsNotFound(s.status()) || absl::IsInvalidArgument(s.status())) {
      return absl::NotFoundError(absl::StrCat("session ", id.substr(0, 64), " not found"));
    }
    return s.status();
  }
  return s;
}

absl::StatusOr<std::vector<SessionInfo>> SessionStore::List(storage::TenantId tenant,
                                                            storage::DocumentId document,
                                                            int64_t now_micros) {
  TOME_ASSIGN_OR_RETURN(auto records, store_->ListRecords(RecordKind::kSession, ""));
  std::vector<SessionInfo> out;
  for (const auto& [id, value] : records) {
    auto s = Read(id, /*with_tail=*/false);
    if (!s.ok() || s->tenant != tenant || s->expire_micros() < now_micros) continue;
    if (document != 0 && s->document != document) continue;
    out.push_back(std::move(*s));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.created_micros > b.created_micros; });
  return out;
}

absl::Status SessionStore::Delete(const std::string& id) {
  TOME_RETURN_IF_ERROR(store_->DeleteRecord(RecordKind::kSession, id));
  return store_->DeleteRecord(RecordKind::kSessionTail, id);
}

absl::StatusOr<int64_t> SessionStore::CollectExpired(int64_t now_micros) {
  TOME_ASSIGN_OR_RETURN(auto records, store_->ListRecords(RecordKind::kSession, ""));
  int64_t deleted = 0;
  for (const auto& [id, value] : records) {
    auto s = Read(id, /*with_tail=*/false);
    const bool document_gone =
        s.ok() && absl::IsNotFound(store_->GetDocument(s->doc_owner, s->document).status());
    if (!s.ok() || s->expire_micros() < now_micros || document_gone) {
      TOME_RETURN_IF_ERROR(Delete(id));
      ++deleted;
    }
  }
  return deleted;
}

std::shared_ptr<engine::Sequence> SessionStates::Get(const std::string& id, int64_t num_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = states_.find(id);
  if (it == states_.end() || it->second.first->num_tokens() != num_tokens) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.second);
  return it->second.first;
}

void SessionStates::Put(const std::string& id, std::shared_ptr<engine::Sequence> sequence) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = states_.find(id);
  if (it != states_.end()) {
    lru_.erase(it->second.second);
    states_.erase(it);
  }
  lru_.push_front(id);
  states_[id] = {std::move(sequence), lru_.begin()};
  while (states_.size() > capacity_) {
    states_.erase(lru_.back());
    lru_.pop_back();
  }
}

void SessionStates::Erase(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = states_.find(id);
  if (it == states_.end()) return;
  lru_.erase(it->second.second);
  states_.erase(it);
}

std::shared_ptr<std::mutex> SessionStates::TurnLock(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<std::mutex> m = locks_[id].lock();
  if (!m) {
    m = std::make_shared<std::mutex>();
    locks_[id] = m;
  }
  // Drop entries of locks nobody holds any more.
  for (auto it = locks_.begin(); it != locks_.end();) {
    it = it->second.expired() ? locks_.erase(it) : std::next(it);
  }
  return m;
}

}  // namespace tome::services
