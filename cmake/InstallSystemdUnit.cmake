# Run by `cmake --install` (cmake/Install.cmake): installs deploy/systemd/iommud.service into
# <prefix>/lib/systemd/system with its ExecStart naming <prefix>/<sbindir>/iommud (the file in the
# repository names /usr/sbin/iommud, the Debian package's path), and the sysusers.d file of the
# unit's group, and the unit's environment file deploy/default/iommud (IOMMUD_OPTS) in
# <sysconfdir>/default. The prefix is the one given at install time (--prefix, CPack's), not configure's.
# Set by the caller: IOMMUD_SOURCE_DIR, IOMMUD_STAGING_DIR, IOMMUD_SBINDIR.
if(IS_ABSOLUTE "${IOMMUD_SBINDIR}")
  set(_sbin "${IOMMUD_SBINDIR}")
else()
  set(_sbin "${CMAKE_INSTALL_PREFIX}/${IOMMUD_SBINDIR}")
endif()
file(READ "${IOMMUD_SOURCE_DIR}/deploy/systemd/iommud.service" _unit)
string(REPLACE "\nExecStart=/usr/sbin/iommud " "\nExecStart=${_sbin}/iommud " _installed "${_unit}")
if(_installed STREQUAL _unit AND NOT _sbin STREQUAL "/usr/sbin")
  message(FATAL_ERROR "deploy/systemd/iommud.service: no 'ExecStart=/usr/sbin/iommud ' line")
endif()
# FHS: prefix /usr (the Debian package) keeps its configuration in /etc, any other in <prefix>/etc.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(_sysconf "/etc")
else()
  set(_sysconf "${CMAKE_INSTALL_PREFIX}/etc")
endif()
string(REPLACE "\nEnvironmentFile=-/etc/default/iommud\n"
  "\nEnvironmentFile=-${_sysconf}/default/iommud\n" _installed "${_installed}")
file(WRITE "${IOMMUD_STAGING_DIR}/iommud.service" "${_installed}")
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system" TYPE FILE
  FILES "${IOMMUD_STAGING_DIR}/iommud.service")
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/sysusers.d" TYPE FILE
  FILES "${IOMMUD_SOURCE_DIR}/deploy/systemd/iommud.sysusers" RENAME iommud.conf)
file(INSTALL DESTINATION "${_sysconf}/default" TYPE FILE
  FILES "${IOMMUD_SOURCE_DIR}/deploy/default/iommud")
