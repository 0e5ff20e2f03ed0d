# Finds everything Tome builds against. Every dependency is a Debian 12 package
# (see README.md); the GPU machine gets absl/GoogleTest/nlohmann-json carried from
# this machine's packages by tools/device/stage_deps.sh.

add_library(tome_warnings INTERFACE)
target_compile_options(tome_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Wno-sign-compare>)

if(TOME_NATIVE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX,C>:-march=native>)
endif()

if(TOME_SANITIZE)
  string(REPLACE ";" "," _tome_san "${TOME_SANITIZE}")
  add_compile_options($<$<COMPILE_LANGUAGE:CXX,C>:-fsanitize=${_tome_san}>
                      $<$<COMPILE_LANGUAGE:CXX,C>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=${_tome_san})
endif()
if(TOME_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "TOME_FUZZ needs clang (libFuzzer): CC=clang CXX=clang++")
  endif()
  # Coverage instrumentation everywhere; the fuzz targets link libFuzzer's main.
  add_compile_options($<$<COMPILE_LANGUAGE:CXX,C>:-fsanitize=fuzzer-no-link>)
endif()

find_package(Threads REQUIRED)
find_package(absl REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)

# CPU matrix products: OpenBLAS when present, else the portable loops in kernels/. The
# OpenMP build of OpenBLAS is required: it shares the kernels' OpenMP thread pool, where the
# pthread build's spinning threads fight OpenMP's for the cores (16x slower decode on 2 cores).
set(TOME_BLAS_FOUND OFF)
if(TOME_BLAS)
  find_path(TOME_CBLAS_INCLUDE_DIR NAMES cblas.h
            PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
  find_library(TOME_OPENBLAS_LIBRARY NAMES openblas
               PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
  if(TOME_CBLAS_INCLUDE_DIR AND TOME_OPENBLAS_LIBRARY)
    set(TOME_BLAS_FOUND ON)
    add_library(tome_blas INTERFACE)
    target_include_directories(tome_blas INTERFACE ${TOME_CBLAS_INCLUDE_DIR})
    target_link_libraries(tome_blas INTERFACE ${TOME_OPENBLAS_LIBRARY})
    target_compile_definitions(tome_blas INTERFACE TOME_HAVE_CBLAS=1)
  else()
    message(STATUS "Tome: no OpenMP OpenBLAS (libopenblas-openmp-dev) found; CPU GEMMs use "
                   "the portable kernel")
  endif()
endif()

# SentencePiece (the real checkpoint's and the embedded model's tokenizer).
find_path(TOME_SENTENCEPIECE_INCLUDE_DIR NAMES sentencepiece_processor.h)
find_library(TOME_SENTENCEPIECE_LIBRARY NAMES sentencepiece)
if(TOME_SENTENCEPIECE_INCLUDE_DIR AND TOME_SENTENCEPIECE_LIBRARY)
  set(TOME_SENTENCEPIECE_FOUND ON)
else()
  set(TOME_SENTENCEPIECE_FOUND OFF)
  if(TOME_SERVICES)
    message(FATAL_ERROR "libsentencepiece-dev is required for TOME_SERVICES=ON")
  endif()
  message(STATUS "Tome: no SentencePiece; the engine supports byte-level tokenizers only")
endif()

# CUDA: ON when nvcc is found (CI builds it so it always compiles, even without a GPU).
set(TOME_CUDA "AUTO" CACHE STRING "Build the CUDA backend: ON, OFF or AUTO (when nvcc is found)")
if(TOME_CUDA STREQUAL "AUTO")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(TOME_CUDA ON)
  else()
    set(TOME_CUDA OFF)
  endif()
endif()
if(TOME_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  # Hopper only: sm_90a (wgmma, TMA) and plain sm_90.
  set(CMAKE_CUDA_ARCHITECTURES OFF)
  enable_language(CUDA)
  # C++17 for device code: CMake 3.25 (Debian 12) has no CUDA20 dialect for nvcc.
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  set(TOME_CUDA_GENCODE
      "-gencode=arch=compute_90a,code=sm_90a" "-gencode=arch=compute_90,code=sm_90")
endif()

if(TOME_BUILD_TESTS OR TOME_BUILD_BENCH)
  find_package(GTest QUIET)
  if(NOT GTest_FOUND)
    if(EXISTS ${TOME_GTEST_SOURCE_DIR}/CMakeLists.txt)
      set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
      add_subdirectory(${TOME_GTEST_SOURCE_DIR} ${CMAKE_BINARY_DIR}/_googletest EXCLUDE_FROM_ALL)
      add_library(GTest::gtest ALIAS gtest)
      add_library(GTest::gtest_main ALIAS gtest_main)
      add_library(GTest::gmock ALIAS gmock)
    else()
      message(FATAL_ERROR "GoogleTest not found: install googletest or set TOME_GTEST_SOURCE_DIR")
    endif()
  endif()
  include(GoogleTest)
endif()

if(TOME_WITH_STORAGE)
  find_package(RocksDB CONFIG REQUIRED)
endif()
if(TOME_SERVICES)
  find_package(Protobuf REQUIRED)
  find_package(gRPC CONFIG REQUIRED)
  find_package(OpenSSL REQUIRED)
  find_program(TOME_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
endif()
