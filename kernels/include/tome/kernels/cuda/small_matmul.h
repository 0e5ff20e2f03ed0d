// Matrix products with a few rows of activations (decode steps), where cuBLAS's tiles leave
// most of the memory bandwidth unused.
#pragma once

#include "tome/kernels/cuda/types.h"

namespace tome::kernels::cuda {

inline constexpr int64_t kSmallMatMulMaxRows = 8;

// Whether SmallMatMul takes these operands: 1..kSmallMatMulMaxRows rows, k a multiple of 8,
// 16-byte aligned rows (pointers and strides).
bool SmallMatMulApplies(const void* x, int64_t ldx, const void* w, int64_t ldw, int64_t m,
                        int64_t k);

// y[m, n] = x[m, k] · w[n, k]ᵀ (row-major, strides in elements), bf16 in, fp32 accumulation,
// y bf16 or fp32 (`y_fp32`). cudaErrorInvalidValue unless SmallMatMulApplies. The kernel starts
// reading w before the kernel ahead of it in the stream has finished (programmatic dependent
// launch), so w must not be that kernel's output (weights never are; x may be).
// `rows_per_cta`: 0 (the default) launches the CTAs the GPU holds at once, each taking an equal
// share of the rows 4 at a time; 2, 4 or 8 launch a CTA per that many rows. The decode-kernel
// benchmark compares them.
cudaError_t SmallMatMul(const bf16* x, int64_t ldx, const bf16* w, int64_t ldw, void* y,
                        bool y_fp32, int64_t ldy, int64_t m, int64_t n, int64_t k,
                        cudaStream_t stream, int rows_per_cta = 0);

// The MLP's first half for a few rows: y[m, n] = SiLU(g) · u with g = x · w[0, n)ᵀ and
// u = x · w[n, 2n)ᵀ (w holds the gate rows, then the up rows), each rounded to bf16 as
// SmallMatMul writes them and then as SiluMul rounds: the same bits as SmallMatMul into a
// [m, 2n] buffer followed by SiluMul, without the buffer or the second launch. The same operand
// rules and w contract as SmallMatMul.
cudaError_t SmallMatMulSiluMul(const bf16* x, int64_t ldx, const bf16* w, int64_t ldw, bf16* y,
                               int64_t ldy, int64_t m, int64_t n, int64_t k, cudaStream_t stream);

}  // namespace tome::kernels::cuda
