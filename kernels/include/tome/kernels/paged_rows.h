// A read-only view of a growing matrix stored in fixed-size pages: rows
// [i·rows_per_page, (i+1)·rows_per_page) live in pages[i]. Sparse-layer keys and values
// (one page = one token block), and block summaries, are kept this way so that sequences
// can share full pages and the block cache can move single pages between tiers.
// The same struct describes host pages (CPU kernels) and device pages (CUDA kernels).
#pragma once

#include <cstdint>

namespace tome::kernels {

template <typename T>
struct PagedRows {
  const T* const* pages = nullptr;
  int64_t rows_per_page = 0;
  int64_t width = 0;     // elements per row
  int64_t num_rows = 0;  // rows present (the last page may be partial)

  const T* row(int64_t i) const {
    return pages[i / rows_per_page] + (i % rows_per_page) * width;
  }
};

}  // namespace tome::kernels
