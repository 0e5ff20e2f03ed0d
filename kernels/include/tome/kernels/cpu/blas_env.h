#pragma once

namespace tome::kernels::cpu {

// OpenBLAS 0.3.21 (Debian 12) does not recognise AVX-512 on AMD Zen 4 and runs its Haswell
// kernels, about 25% slower than its SkylakeX kernels on the same machine (tome_bench,
// docs/PERFORMANCE.md). The choice is made when the library loads, so a program calls this
// first thing in main(): if the CPU has AVX-512 and OPENBLAS_CORETYPE is unset, it sets it and
// re-executes itself; otherwise it returns. Does nothing in builds without OpenBLAS.
void ReexecWithFasterBlasIfNeeded(char** argv);

}  // namespace tome::kernels::cpu
