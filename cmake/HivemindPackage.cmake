# Install rules for the exported CMake package (find_package(hivemind) -> hivemind::<module>) and the
# pkg-config file (pkg-config --cflags --libs hivemind).
include(CMakePackageConfigHelpers)

set(HIVEMIND_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/hivemind)
install(EXPORT hivemindTargets NAMESPACE hivemind:: DESTINATION ${HIVEMIND_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/hivemindConfig.cmake.in
  ${PROJECT_BINARY_DIR}/hivemindConfig.cmake INSTALL_DESTINATION ${HIVEMIND_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/hivemindConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/hivemindConfig.cmake ${PROJECT_BINARY_DIR}/hivemindConfigVersion.cmake
  DESTINATION ${HIVEMIND_CMAKE_DIR})

get_property(_modules GLOBAL PROPERTY HIVEMIND_MODULES)
set(HIVEMIND_PC_LIBS "")
# Reverse so that dependents come before their dependencies on the link line.
list(REVERSE _modules)
foreach(m IN LISTS _modules)
  string(APPEND HIVEMIND_PC_LIBS " -lhivemind_${m}")
endforeach()
file(RELATIVE_PATH HIVEMIND_PC_TO_PREFIX /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
configure_file(${PROJECT_SOURCE_DIR}/cmake/hivemind.pc.in ${PROJECT_BINARY_DIR}/hivemind.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/hivemind.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
