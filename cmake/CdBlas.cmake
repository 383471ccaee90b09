# Defines the interface target cd_blas: the cblas headers and library chosen
# by CD_BLAS, plus CD_BLAS_OPENBLAS or CD_BLAS_BLIS so the thread setter can
# call the provider's own API.
add_library(cd_blas INTERFACE)
if(CD_BLAS STREQUAL "OpenBLAS")
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
  target_link_libraries(cd_blas INTERFACE PkgConfig::OPENBLAS)
  target_compile_definitions(cd_blas INTERFACE CD_BLAS_OPENBLAS=1)
  set(CD_PC_BLAS "openblas")
elseif(CD_BLAS STREQUAL "BLIS")
  find_library(BLIS_LIBRARY NAMES blis-mt blis REQUIRED)
  find_path(BLIS_INCLUDE_DIR cblas.h
    PATH_SUFFIXES blis-openmp blis-pthread blis x86_64-linux-gnu/blis-openmp
                  x86_64-linux-gnu/blis-pthread REQUIRED)
  target_include_directories(cd_blas INTERFACE ${BLIS_INCLUDE_DIR})
  target_link_libraries(cd_blas INTERFACE ${BLIS_LIBRARY})
  target_compile_definitions(cd_blas INTERFACE CD_BLAS_BLIS=1)
  set(CD_PC_BLAS "")
  set(CD_PC_BLAS_LIBS "-lblis")
else()
  message(FATAL_ERROR "CD_BLAS must be OpenBLAS or BLIS, not '${CD_BLAS}'")
endif()
message(STATUS "colddiff: BLAS = ${CD_BLAS}")

# LAPACK (the metrics' symmetric eigensolver, dsyevd_, called through its
# Fortran symbol with 32-bit integers). OpenBLAS ships LAPACK in the same
# library; when it does not (a build without it), or for BLIS, which has
# none, a separate LAPACK is found with find_package(LAPACK) (Debian:
# liblapack-dev) and added to cd_blas.
include(CheckFunctionExists)
set(CD_LAPACK_FROM_BLAS OFF)
if(CD_BLAS STREQUAL "OpenBLAS")
  set(CMAKE_REQUIRED_LIBRARIES PkgConfig::OPENBLAS)
  check_function_exists(dsyevd_ CD_OPENBLAS_HAS_DSYEVD)
  unset(CMAKE_REQUIRED_LIBRARIES)
  if(CD_OPENBLAS_HAS_DSYEVD)
    set(CD_LAPACK_FROM_BLAS ON)
  endif()
endif()
if(NOT CD_LAPACK_FROM_BLAS)
  # The reference LAPACK (liblapack), not a second optimised BLAS with its
  # own cblas next to the chosen one; -DBLA_VENDOR=... overrides.
  if(NOT DEFINED BLA_VENDOR)
    set(BLA_VENDOR Generic)
  endif()
  find_package(LAPACK)
  if(NOT LAPACK_FOUND)
    message(FATAL_ERROR "colddiff: ${CD_BLAS} has no LAPACK (dsyevd_) and no separate "
                        "LAPACK was found; install one (Debian: liblapack-dev)")
  endif()
  target_link_libraries(cd_blas INTERFACE LAPACK::LAPACK)
  # pkg-config users of a static libcolddiff need it too.
  set(CD_PC_BLAS_LIBS "${CD_PC_BLAS_LIBS} -llapack")
  message(STATUS "colddiff: LAPACK = ${LAPACK_LIBRARIES}")
else()
  message(STATUS "colddiff: LAPACK = ${CD_BLAS}'s own")
endif()
