"""Shared bits of the scenario scripts: arguments, a client, a report of the invariants."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from iommud import Client  # noqa: E402


def connect(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--target", default=os.environ.get("IOMMUD_TARGET",
                                                           "unix:/run/iommud/iommud.sock"))
    args = parser.parse_args()
    return Client(args.target)


def report(client, expected_leaks=()):
    """Prints the auditor's findings; True when they are exactly `expected_leaks` (reasons)."""
    leaks = sorted(leak.reason for leak in client.leaks())
    held = leaks == sorted(expected_leaks)
    print(f"auditor: {leaks or 'no leaked attachment'} -> invariants "
          f"{'held' if held else 'VIOLATED'}")
    return held
