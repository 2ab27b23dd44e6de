# cmake --install: header, libprobmoe.so and libprobmoe.a, probmoe.pc and the CMake package
# (lib/cmake/probmoe). The pkg-config and CMake files locate the install relative to their own
# directory, so the prefix can be chosen at install time (cmake --install build --prefix P).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(FILES include/probmoe.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS probmoe LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PM_STATIC_ARCHIVE} DESTINATION ${CMAKE_INSTALL_LIBDIR})
# The installed .so keeps the path of OpenBLAS's OpenMP build in its RUNPATH: the loader's
# default libopenblas.so.0 may be the pthread build, whose threads would fight OpenMP's.
set_target_properties(probmoe PROPERTIES INSTALL_RPATH_USE_LINK_PATH ON)

# Paths from the pkg-config and CMake package directories to the include directory.
file(RELATIVE_PATH PM_PC_INCLUDEDIR ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_FULL_INCLUDEDIR})
file(RELATIVE_PATH PM_CONFIG_INCLUDEDIR ${CMAKE_INSTALL_FULL_LIBDIR}/cmake/probmoe ${CMAKE_INSTALL_FULL_INCLUDEDIR})

# What a static link needs besides libprobmoe.a (the shared library records it itself).
list(JOIN OPENBLAS_OMP_LDFLAGS " " pm_openblas_ldflags)
set(PM_PC_LIBS_PRIVATE "${OpenMP_C_FLAGS} ${pm_openblas_ldflags} -lm")
if(PM_HAVE_DNNL)
  string(APPEND PM_PC_LIBS_PRIVATE " -ldnnl")
endif()
separate_arguments(PM_STATIC_LINK_OPTIONS UNIX_COMMAND "${OpenMP_C_FLAGS}")
set(PM_STATIC_LINK_LIBRARIES ${OPENBLAS_OMP_LINK_LIBRARIES} ${CJSON_LINK_LIBRARIES} ${PCRE2_LINK_LIBRARIES} ${UTF8PROC_LINK_LIBRARIES} m)
if(PM_HAVE_DNNL)
  list(APPEND PM_STATIC_LINK_LIBRARIES dnnl)
endif()

set(PM_SHARED_FILE ${CMAKE_SHARED_LIBRARY_PREFIX}probmoe${CMAKE_SHARED_LIBRARY_SUFFIX}.${PROJECT_VERSION})
set(PM_SHARED_SONAME ${CMAKE_SHARED_LIBRARY_PREFIX}probmoe${CMAKE_SHARED_LIBRARY_SUFFIX}.${PM_SOVERSION})
get_filename_component(PM_STATIC_FILE ${PM_STATIC_ARCHIVE} NAME)

configure_file(cmake/probmoe.pc.in probmoe.pc @ONLY)
configure_file(cmake/probmoeConfig.cmake.in probmoeConfig.cmake @ONLY)
# Before 1.0 a minor release may break the API, so only the same minor version is compatible.
write_basic_package_version_file(probmoeConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/probmoe.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/probmoeConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/probmoeConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/probmoe)
