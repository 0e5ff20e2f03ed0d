// Status propagation macros, as Abseil ships them since 2026 (ABSL_RETURN_IF_ERROR,
// ABSL_ASSIGN_OR_RETURN). Debian 12's Abseil (20220623) predates them, so Tome keeps these
// two under its own prefix.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TOME_STATUS_CONCAT_INNER_(a, b) a##b
#define TOME_STATUS_CONCAT_(a, b) TOME_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define TOME_RETURN_IF_ERROR(expr)                 \
  do {                                             \
    ::absl::Status tome_status_ = (expr);          \
    if (!tome_status_.ok()) return tome_status_;   \
  } while (false)

// `lhs = value of expr` if `expr` (an absl::StatusOr) is OK, else returns its status.
#define TOME_ASSIGN_OR_RETURN(lhs, expr) \
  TOME_ASSIGN_OR_RETURN_IMPL_(TOME_STATUS_CONCAT_(tome_statusor_, __LINE__), lhs, expr)

#define TOME_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
