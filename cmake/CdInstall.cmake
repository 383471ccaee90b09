# Installs the header, the shared library, colddiff.pc and a relocatable CMake
# package so that find_package(colddiff) gives colddiff::colddiff.
include(CMakePackageConfigHelpers)

install(TARGETS colddiff EXPORT colddiffTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES include/colddiff.h include/colddiff_experimental.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(CD_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/colddiff)
install(EXPORT colddiffTargets NAMESPACE colddiff:: DESTINATION ${CD_CMAKE_DIR})
configure_package_config_file(cmake/colddiffConfig.cmake.in
  ${PROJECT_BINARY_DIR}/colddiffConfig.cmake INSTALL_DESTINATION ${CD_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/colddiffConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/colddiffConfig.cmake
              ${PROJECT_BINARY_DIR}/colddiffConfigVersion.cmake
        DESTINATION ${CD_CMAKE_DIR})

# pkg-config: the prefix is found relative to the .pc file, so an installed
# tree can be moved (the consumer test installs into a temporary folder).
file(RELATIVE_PATH CD_PC_UP "/root/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/root")
string(REGEX REPLACE "/$" "" CD_PC_UP "${CD_PC_UP}")
configure_file(cmake/colddiff.pc.in ${PROJECT_BINARY_DIR}/colddiff.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/colddiff.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# libcolddiff-mpi when it was built: the library and its header, a CMake
# export of its own that the package loads for find_package(colddiff
# COMPONENTS mpi), and colddiff-mpi.pc (compile with mpicc, which brings
# MPI's own flags).
if(TARGET colddiff_mpi)
  install(TARGETS colddiff_mpi EXPORT colddiffMpiTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(FILES include/colddiff_mpi.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT colddiffMpiTargets NAMESPACE colddiff:: DESTINATION ${CD_CMAKE_DIR})
  configure_file(cmake/colddiff-mpi.pc.in ${PROJECT_BINARY_DIR}/colddiff-mpi.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/colddiff-mpi.pc
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()

# The frozen MNIST classifier the metrics use by default and the pretrained
# MNIST diffusion model (cd_classifier_load_default and cd_model_load_default
# look here after COLDDIFF_CLASSIFIER and COLDDIFF_MODEL).
install(FILES ${PROJECT_SOURCE_DIR}/examples/data/mnist-classifier.cdm
              ${PROJECT_SOURCE_DIR}/examples/data/mnist-diffusion.cdm
        DESTINATION ${CMAKE_INSTALL_DATADIR}/colddiff)

# The Python binding: colddiff.py (and the checkpoint reader it shares with
# the converter) where Debian's python3 looks for a prefix's modules
# (lib/python3.X/dist-packages under /usr/local and /usr, X asked of the
# python3 found here), with colddiff-library.txt beside it giving the
# installed library's path relative to it, so that `import colddiff` loads
# this installation's library without LD_LIBRARY_PATH. Other prefixes:
# PYTHONPATH=<this dir>.
if(NOT DEFINED CACHE{CD_PYTHON_INSTALL_DIR})
  set(CD_PY_DEFAULT "lib/python3/dist-packages")
  find_program(CD_PY_FOR_INSTALL NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
  find_program(CD_PY_FOR_INSTALL NAMES python3)
  if(CD_PY_FOR_INSTALL)
    execute_process(COMMAND ${CD_PY_FOR_INSTALL} -c
      "import os, sys, sysconfig; print('lib/python%d.%d/%s' % (sys.version_info[0], sys.version_info[1], os.path.basename(sysconfig.get_path('purelib'))))"
      OUTPUT_VARIABLE CD_PY_ASKED OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE CD_PY_RC)
    if(CD_PY_RC EQUAL 0 AND CD_PY_ASKED MATCHES "^lib/python3\\.[0-9]+/(dist|site)-packages$")
      set(CD_PY_DEFAULT "${CD_PY_ASKED}")
    endif()
  endif()
  set(CD_PYTHON_INSTALL_DIR "${CD_PY_DEFAULT}" CACHE STRING
      "where cmake --install puts the Python binding, relative to the prefix")
endif()
file(RELATIVE_PATH CD_PY_TO_LIB "/root/${CD_PYTHON_INSTALL_DIR}"
     "/root/${CMAKE_INSTALL_LIBDIR}/libcolddiff.so.${PROJECT_VERSION_MAJOR}")
file(WRITE ${PROJECT_BINARY_DIR}/colddiff-library.txt "${CD_PY_TO_LIB}\n")
install(FILES ${PROJECT_SOURCE_DIR}/examples/python/colddiff.py
              ${PROJECT_SOURCE_DIR}/examples/python/cdm_format.py
              ${PROJECT_BINARY_DIR}/colddiff-library.txt
        DESTINATION ${CD_PYTHON_INSTALL_DIR})
