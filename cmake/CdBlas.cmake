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
