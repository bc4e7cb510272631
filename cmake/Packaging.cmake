# `cpack -G DEB` (from the build directory): the Debian package iommud — the daemon, iommuctl, the
# systemd unit with its sysusers.d file and /etc/default/iommud (a conffile) — installed under /usr.
# Only the "daemon" install component: the client library, headers and CMake/pkg-config files are
# for `cmake --install`. Depends: the run-time libraries only, computed by dpkg-shlibdeps (they
# must agree with deploy/debian-packages-runtime.txt: tests/deploy/package_test.sh).
set(CPACK_PACKAGE_NAME iommud)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "iommud")
set(CPACK_PACKAGE_CONTACT "iommud maintainers <iommud@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "IOMMU control-plane daemon (gRPC) and its CLI iommuctl")
set(CPACK_PACKAGE_DESCRIPTION "iommud holds a host's registry of IOMMU units, groups, devices and
domains and programs the hardware through a pluggable backend; VMM orchestrators attach, map and
claim over its unix socket (group iommud). iommuctl is its command-line client.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL daemon)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_DEBIAN_PACKAGE_NAME iommud)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS systemd)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  "${PROJECT_SOURCE_DIR}/deploy/debian/postinst" "${PROJECT_SOURCE_DIR}/deploy/debian/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
