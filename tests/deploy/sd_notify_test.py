#!/usr/bin/env python3
"""iommud speaks systemd's notify protocol (Type=notify in deploy/systemd/iommud.service).

The daemon runs with NOTIFY_SOCKET naming a unix datagram socket this test owns, as systemd would
set it. Checked: READY=1 (with a STATUS= naming the socket) arrives, and when it does the daemon
already answers iommuctl; nothing says STOPPING=1 before SIGTERM; after SIGTERM, STOPPING=1 arrives
and the daemon exits 0.

Usage: sd_notify_test.py IOMMUD IOMMUCTL
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def fail(message, log_path=None):
    print(f"FAIL: {message}", file=sys.stderr)
    if log_path and os.path.exists(log_path):
        print("--- iommud log", file=sys.stderr)
        print(open(log_path).read(), file=sys.stderr)
    sys.exit(1)


def receive(sock, deadline):
    """The next notification (a dict of its assignments), or None when `deadline` passes."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    sock.settimeout(remaining)
    try:
        data = sock.recv(4096).decode()
    except socket.timeout:
        return None
    return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)


def main():
    iommud, iommuctl = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as work:
        notify_path = os.path.join(work, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify_path)
        log_path = os.path.join(work, "iommud.log")
        state_dir = os.path.join(work, "state")
        target = f"unix:{state_dir}/iommud.sock"
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        with open(log_path, "w") as log:
            daemon = subprocess.Popen(
                [iommud, f"--state_dir={state_dir}", "--state=memory", "--metrics_port=0"],
                env=env, stderr=log)
        try:
            ready = None
            received = []
            deadline = time.monotonic() + 60
            while ready is None:
                message = receive(sock, deadline)
                if message is None:
                    fail(f"no READY=1 within 60s (received {received})", log_path)
                received.append(message)
                if "STOPPING" in message:
                    fail(f"STOPPING=1 before any signal: {received}", log_path)
                if message.get("READY") == "1":
                    ready = message
            if ready.get("STATUS") != f"serving on {target}":
                fail(f"READY=1 came with STATUS={ready.get('STATUS')!r}", log_path)
            # READY=1 means serving: a client succeeds at once, no retrying.
            groups = subprocess.run([iommuctl, "--target", target, "--timeout", "5s", "groups"],
                                    capture_output=True, text=True)
            if groups.returncode != 0 or "smmu0" not in groups.stdout:
                fail(f"iommuctl groups right after READY=1: {groups.returncode} "
                     f"{groups.stdout}{groups.stderr}", log_path)
            print(f"ok: READY=1 ({ready['STATUS']}), and the daemon serves")

            # Nothing more until a signal.
            extra = receive(sock, time.monotonic() + 1)
            if extra is not None:
                fail(f"unexpected notification while serving: {extra}", log_path)

            daemon.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 30
            stopping = None
            while stopping is None:
                message = receive(sock, deadline)
                if message is None:
                    fail("no STOPPING=1 within 30s of SIGTERM", log_path)
                if message.get("STOPPING") == "1":
                    stopping = message
            if not stopping.get("STATUS", "").startswith("shutting down"):
                fail(f"STOPPING=1 came with STATUS={stopping.get('STATUS')!r}", log_path)
            print(f"ok: STOPPING=1 ({stopping['STATUS']}) on SIGTERM")
            code = daemon.wait(timeout=30)
            if code != 0:
                fail(f"iommud exited with {code} after SIGTERM", log_path)
            print("ok: exit 0")
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    print("PASS")


if __name__ == "__main__":
    main()
