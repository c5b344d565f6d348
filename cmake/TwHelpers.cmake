# Project-wide helpers: warning flags for our own targets, sanitizers, and tw_add_test().

if(TW_SANITIZE)
  # -fno-sanitize=vptr: UBSan's vptr check misfires on cpprestsdk's stream buffers (its
  # Debian build and our code disagree on type info across the shared-library boundary).
  add_compile_options(-fsanitize=address,undefined -fno-sanitize=vptr -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

if(NOT CMAKE_C_COMPILER_LAUNCHER AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  find_program(TW_CCACHE ccache)
  if(TW_CCACHE)
    set(CMAKE_C_COMPILER_LAUNCHER ${TW_CCACHE})
    set(CMAKE_CXX_COMPILER_LAUNCHER ${TW_CCACHE})
  endif()
endif()

# tw_target_warnings(target): -Wall -Wextra -Werror on code we write (never on generated code).
function(tw_target_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror -Wno-missing-field-initializers)
endfunction()

# tw_add_test(NAME name SOURCES a.cc ... [LIBS lib ...] [LABELS l ...] [TIMEOUT s]
#             [ENV K=V ...])
# Builds a GoogleTest binary into bin/ and registers it with CTest. Every test carries the
# label `ci` unless it is labelled `long` (torture and soak runs: `ctest -L long`).
function(tw_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;ENV" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  tw_target_warnings(${T_NAME})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_compile_definitions(${T_NAME} PRIVATE
    TW_SOURCE_DIR="${PROJECT_SOURCE_DIR}" TW_BINARY_DIR="${PROJECT_BINARY_DIR}")
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  set(labels ${T_LABELS})
  if(NOT "long" IN_LIST labels)
    list(APPEND labels ci)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${labels}" TIMEOUT ${T_TIMEOUT})
  if(T_ENV)
    set_tests_properties(${T_NAME} PROPERTIES ENVIRONMENT "${T_ENV}")
  endif()
endfunction()

# tw_add_script_test(NAME name COMMAND cmd ... [LABELS l ...] [TIMEOUT s])
# A test driven by a script (shell or Python) rather than a GoogleTest binary.
function(tw_add_script_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "COMMAND;LABELS;ENV" ${ARGN})
  add_test(NAME ${T_NAME} COMMAND ${T_COMMAND})
  set(labels ${T_LABELS})
  if(NOT "long" IN_LIST labels)
    list(APPEND labels ci)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${labels}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "TW_SOURCE_DIR=${PROJECT_SOURCE_DIR};TW_BIN_DIR=${PROJECT_BINARY_DIR}/bin;${T_ENV}")
endfunction()
