# tome_add_library(NAME <name> HDRS ... SRCS ... DEPS ... PRIVATE_DEPS ...)
#
# One library per module, in the manner of absl_cc_library: public headers live in
# <module>/include/tome/<module>/, the rest in <module>/src/. Creates target tome_<name>
# with alias tome::<name>.
function(tome_add_library)
  cmake_parse_arguments(ARG "" "NAME" "HDRS;SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  set(target tome_${ARG_NAME})
  add_library(${target} STATIC ${ARG_SRCS} ${ARG_HDRS})
  add_library(tome::${ARG_NAME} ALIAS ${target})
  target_include_directories(${target}
    PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${target} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS} tome_warnings)
endfunction()

# tome_add_test(NAME <name> SRCS ... DEPS ... [LABELS ...])
#
# One GoogleTest binary; its cases are registered with ctest by gtest_discover_tests.
function(tome_add_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} tome_testutil GTest::gtest GTest::gmock
                        GTest::gtest_main tome_warnings)
  target_compile_definitions(${ARG_NAME} PRIVATE
    TOME_SOURCE_DIR="${PROJECT_SOURCE_DIR}" TOME_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${ARG_NAME}
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
endfunction()
