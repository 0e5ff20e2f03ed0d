// Shared pieces of the fuzz targets.
#pragma once

#include <cstdio>
#include <cstdlib>

// Aborts (a crash libFuzzer reports, with the input) when a property of the code under test
// does not hold. Unlike assert() it stays on in release builds.
#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, \
                   #cond);                                                        \
      std::abort();                                                               \
    }                                                                             \
  } while (false)
