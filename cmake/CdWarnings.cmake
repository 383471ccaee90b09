# Compiler flags shared by the library, the tests and the examples.
add_library(cd_flags INTERFACE)
# Strict C11 plus POSIX.1-2008 (fdopen, fsync, mkdtemp, O_CLOEXEC ...).
target_compile_definitions(cd_flags INTERFACE _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
target_compile_options(cd_flags INTERFACE
  -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
  $<$<BOOL:${CD_WERROR}>:-Werror>
  # Paths in debug information and __FILE__ relative to the source root:
  # the library carries no path of the machine that built it, and two
  # clones describe the same ABI (tests/abi/check-abi.sh).
  -ffile-prefix-map=${PROJECT_SOURCE_DIR}/=)

# AddressSanitizer and UBSan, every UB report fatal: the whole build with
# CD_SANITIZE, and always the fuzz targets' copy of the library.
add_library(cd_sanitize INTERFACE)
target_compile_options(cd_sanitize INTERFACE
  -fsanitize=address,undefined -fno-sanitize-recover=undefined
  -fno-omit-frame-pointer)
target_link_options(cd_sanitize INTERFACE -fsanitize=address,undefined)
if(CD_SANITIZE)
  target_link_libraries(cd_flags INTERFACE cd_sanitize)
endif()
