#!/usr/bin/python3
"""The SystemCallFilter= of a systemd unit, evaluated as systemd does (tests/deploy).

  unit_syscall_filter.py check UNIT TRACE UID
      Every system call in TRACE (strace -f output) must be allowed by UNIT's filter; as root
      (UID 0) the trace must show SQLite's fchown of its WAL files.
  unit_syscall_filter.py exec UNIT -- COMMAND [ARGS...]
      Loads UNIT's filter into this process as a real seccomp filter (libseccomp, Debian's
      python3-seccomp: /usr/bin/python3) whose default action kills the process with SIGSYS, as
      systemd's does, with no_new_privs set (NoNewPrivileges=yes), then executes COMMAND under it.

Groups (@system-service, ...) are expanded by `systemd-analyze syscall-filter`. systemd's
semantics: the first assignment decides allow-list (and brings @default) or deny-list; every later
one adds (no ~) or removes (~), in order.
"""
import os
import re
import subprocess
import sys

_groups = {}


def expand(name):
    """A system call, or every call of a @group (nested groups expanded)."""
    if not name.startswith("@"):
        return {name}
    if name not in _groups:
        out = subprocess.run(["systemd-analyze", "syscall-filter", name], check=True,
                             capture_output=True, text=True).stdout
        members = set()
        for line in out.splitlines()[1:]:
            line = line.strip()
            if line and not line.startswith("#"):
                members |= expand(line)
        if not members:
            sys.exit(f"FAIL: unknown system-call group {name}")
        _groups[name] = members
    return _groups[name]


def allowed_calls(unit):
    lines = [l.split("=", 1)[1].strip() for l in open(unit) if l.startswith("SystemCallFilter=")]
    if not lines or lines[0].startswith("~"):
        sys.exit("FAIL: the unit has no allow-list SystemCallFilter")
    allowed = set(expand("@default"))
    for value in lines:
        deny = value.startswith("~")
        for name in value.lstrip("~").split():
            if deny:
                allowed -= expand(name)
            else:
                allowed |= expand(name)
    return allowed


def check(unit, trace, uid):
    allowed = allowed_calls(unit)
    called = set()
    for line in open(trace):
        m = re.match(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
        if m and m.group(1) != "resumed":
            called.add(m.group(1))
    if len(called) < 20:
        sys.exit(f"FAIL: strace saw only {sorted(called)}")
    denied = sorted(called - allowed)
    if denied:
        sys.exit(f"FAIL: iommud calls {denied}, which the unit's SystemCallFilter forbids (SIGSYS)")
    if uid == 0 and "fchown" not in called:
        sys.exit("FAIL: as root SQLite should fchown its WAL files; the trace has no fchown")
    print(f"ok: all {len(called)} system calls iommud made are allowed by the unit's filter"
          + (" (fchown among them)" if "fchown" in called else ""))


def exec_under_filter(unit, command):
    import seccomp  # Debian's python3-seccomp
    kill = getattr(seccomp, "KILL_PROCESS", seccomp.KILL)
    rules = seccomp.SyscallFilter(defaction=kill)
    added = 0
    for name in sorted(allowed_calls(unit)):
        try:
            rules.add_rule(seccomp.ALLOW, name)
            added += 1
        except (RuntimeError, ValueError):
            pass  # not a call of this architecture (chown32, ...): systemd skips those too
    if added < 100:
        sys.exit(f"FAIL: only {added} system calls of the filter resolve on this architecture")
    print(f"ok: seccomp filter of {added} allowed system calls loaded; exec {command[0]}",
          file=sys.stderr, flush=True)
    rules.load()
    os.execv(command[0], command)


def main(argv):
    if len(argv) == 5 and argv[1] == "check":
        check(argv[2], argv[3], int(argv[4]))
    elif len(argv) >= 5 and argv[1] == "exec" and argv[3] == "--":
        exec_under_filter(argv[2], argv[4:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
