# `cmake --install`: the daemon (sbin), iommuctl (bin) and its bash completion, the systemd unit and its sysusers.d file, the C++ client library (clients/cpp, static)
# with its headers and the generated proto headers they include, the CMake package
# (find_package(iommud CONFIG) -> iommud::client) and a pkg-config file (iommud.pc).
# Headers go under <includedir>/iommud keeping their repository paths, so that the installed ones
# include each other exactly as in the source tree and nothing lands in <includedir>/google.
include(GNUInstallDirs)
# `cmake --install` and `cpack` use what is built (the README builds iommud and iommuctl only)
# instead of building every test first.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)
include(CMakePackageConfigHelpers)

set(IOMMUD_INSTALL_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}/iommud")
set(IOMMUD_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/iommud")

install(TARGETS iommud RUNTIME DESTINATION "${CMAKE_INSTALL_SBINDIR}" COMPONENT daemon)
install(TARGETS iommuctl RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT daemon)
# iommuctl's bash completion, where bash-completion looks for it (<datadir>/bash-completion/completions).
install(FILES clients/iommuctl/iommuctl.bash DESTINATION "${CMAKE_INSTALL_DATADIR}/bash-completion/completions"
  RENAME iommuctl COMPONENT daemon)
# <prefix>/lib/systemd/system/iommud.service (ExecStart: this prefix's sbin/iommud) and
# <prefix>/lib/sysusers.d/iommud.conf; systemd reads both from /usr and /usr/local.
install(CODE "set(IOMMUD_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
set(IOMMUD_STAGING_DIR \"${PROJECT_BINARY_DIR}/cmake\")
set(IOMMUD_SBINDIR \"${CMAKE_INSTALL_SBINDIR}\")" COMPONENT daemon)
install(SCRIPT cmake/InstallSystemdUnit.cmake COMPONENT daemon)

# The client library and the static libraries it links, exported as iommud::<name>; the installed
# targets' include directory is <includedir>/iommud (INCLUDES DESTINATION).
set(_iommud_exported iommud_client iommud_status_codec iommud_proto iommud_third_party_proto
    iommud_core_base)
set_target_properties(iommud_client PROPERTIES EXPORT_NAME client)
set_target_properties(iommud_status_codec PROPERTIES EXPORT_NAME status_codec)
set_target_properties(iommud_proto PROPERTIES EXPORT_NAME proto)
set_target_properties(iommud_third_party_proto PROPERTIES EXPORT_NAME third_party_proto)
set_target_properties(iommud_core_base PROPERTIES EXPORT_NAME core_base)
install(TARGETS ${_iommud_exported} EXPORT iommudTargets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT dev
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT dev
  INCLUDES DESTINATION "${IOMMUD_INSTALL_INCLUDEDIR}")
install(EXPORT iommudTargets NAMESPACE iommud:: DESTINATION "${IOMMUD_INSTALL_CMAKEDIR}"
  COMPONENT dev)

install(FILES clients/cpp/iommud_client.h clients/cpp/iommu_rpcs.inc
  DESTINATION "${IOMMUD_INSTALL_INCLUDEDIR}/clients/cpp" COMPONENT dev)
install(DIRECTORY "${PROJECT_BINARY_DIR}/proto/iommu" "${PROJECT_BINARY_DIR}/proto/third_party/google"
  "${PROJECT_BINARY_DIR}/proto/third_party/grpc"
  DESTINATION "${IOMMUD_INSTALL_INCLUDEDIR}" COMPONENT dev
  FILES_MATCHING PATTERN "*.pb.h" PATTERN "CMakeFiles" EXCLUDE)
# The .proto sources, for clients in other languages.
install(DIRECTORY proto/iommu proto/third_party/google proto/third_party/grpc
  DESTINATION "${CMAKE_INSTALL_DATADIR}/iommud/proto" COMPONENT dev FILES_MATCHING PATTERN "*.proto")

configure_package_config_file(cmake/iommudConfig.cmake.in
  "${PROJECT_BINARY_DIR}/cmake/iommudConfig.cmake" INSTALL_DESTINATION "${IOMMUD_INSTALL_CMAKEDIR}")
# 0.x: a minor version may break the API.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/cmake/iommudConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/cmake/iommudConfig.cmake"
  "${PROJECT_BINARY_DIR}/cmake/iommudConfigVersion.cmake"
  DESTINATION "${IOMMUD_INSTALL_CMAKEDIR}" COMPONENT dev)

# Relocatable: the prefix is found from the .pc file's own directory (pkgconf's ${pcfiledir}), so
# the file is right for whatever --prefix `cmake --install` is given.
file(RELATIVE_PATH IOMMUD_PC_PREFIX_FROM_PCDIR "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
string(REGEX REPLACE "/$" "" IOMMUD_PC_PREFIX_FROM_PCDIR "${IOMMUD_PC_PREFIX_FROM_PCDIR}")
configure_file(cmake/iommud.pc.in "${PROJECT_BINARY_DIR}/cmake/iommud.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/cmake/iommud.pc"
  DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig" COMPONENT dev)
