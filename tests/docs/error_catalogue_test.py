#!/usr/bin/env python3
"""The error-reason catalogue is complete: header, code and docs agree.

Checks, from the repository root (argv[1], default: two levels above this file):
  (a) core/error_reasons.h parses: `inline constexpr absl::string_view kFooBar = "FOO_BAR";`,
      each name the CamelCase of its value, no value twice.
  (b) No source under core/, server/, clients/ or proto/ passes a reason as a string literal:
      an UPPER_SNAKE literal among the arguments of Error(...) or of the helpers that forward
      their argument as the reason (ErrnoError of core/host, FileError, InvalidOptions, Unknown), in set_reason(...), or
      compared with ErrorReason(...). Each is named with file:line; use reason::k... instead.
      Every reason::k... the sources use must exist in the header.
  (c) docs/errors.md (its "## Catalogue" section) has a row for every constant, with a code, a
      description and a client action, and every reason catalogued there is in the header.
  (d) Every reason the tests expect from the code (EXPECT_ERROR(expr, kCode, "REASON") under
      tests/) is in the header: a test cannot pin a reason the catalogue does not know.
Exits 1 naming every problem, 0 when there is none.
"""

import os
import re
import sys

HEADER = "core/error_reasons.h"
CATALOGUE = "docs/errors.md"
SOURCE_DIRS = ("core", "server", "clients", "proto")
SOURCE_SUFFIXES = (".cc", ".h", ".inc")

REASON = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*"
CONSTANT_RE = re.compile(
    r'inline\s+constexpr\s+absl::string_view\s+(k[A-Za-z0-9]+)\s*=\s*"(' + REASON + r')"\s*;')
# Calls whose arguments carry a reason: Error() and the helpers that pass theirs to Error().
CALL_RE = re.compile(r"(?<![A-Za-z0-9_])(Error|ErrnoError|FileError|InvalidOptions|Unknown|set_reason)\s*\(")
LITERAL_RE = re.compile(r'"(' + REASON + r')"')
COMPARE_RE = re.compile(
    r'ErrorReason\([^()]*\)\s*[!=]=\s*"(' + REASON + r')"|"(' + REASON + r')"\s*[!=]=\s*ErrorReason\(')
USE_RE = re.compile(r"reason::(k[A-Za-z0-9]+)")
EXPECT_ERROR_RE = re.compile(r"(?<![A-Za-z0-9_])EXPECT_ERROR\s*\(")
# A catalogue row (below the "## Catalogue" heading):
# | `REASON` | code | raised by | when | metadata | client action |
CATALOGUE_HEADING = "## Catalogue"
ROW_RE = re.compile(r"^\|\s*`(" + REASON + r")`\s*\|(.*)\|\s*$")


def camel(reason):
    return "k" + "".join(word.capitalize() for word in reason.split("_"))


def blank_comments(text):
    """Replaces // comments with spaces (same length, so offsets and lines stay)."""
    out = []
    i = 0
    while i < len(text):
        if text[i] == '"':
            j = i + 1
            while j < len(text) and text[j] != '"' and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text[i] == "'" and i > 0 and not text[i - 1].isalnum():  # a char literal
            j = text.find("'", i + (3 if text[i + 1:i + 2] == "\\" else 2))
            j = i if j < 0 else j
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = len(text) if j < 0 else j
            out.append(" " * (j - i))
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def call_arguments(text, start):
    """The text of a call's arguments; `start` is just after its '('."""
    depth = 1
    i = start
    while i < len(text) and depth:
        c = text[i]
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        i += 1
    return text[start:i - 1]


def parse_header(root, problems):
    path = os.path.join(root, HEADER)
    constants = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if "absl::string_view" not in line or "constexpr" not in line:
                continue
            m = CONSTANT_RE.search(line)
            if not m:
                problems.append(f"{HEADER}:{number}: not a reason constant: {line.strip()}")
                continue
            name, value = m.groups()
            if name != camel(value):
                problems.append(f"{HEADER}:{number}: {name} should be named {camel(value)}")
            if value in constants.values():
                problems.append(f"{HEADER}:{number}: {value} is defined twice")
            constants[name] = value
    if not constants:
        problems.append(f"{HEADER}: no reason constants found")
    return constants


def scan_sources(root, constants, problems):
    """Literal reasons at raise/compare sites, and uses of undefined constants."""
    for top in SOURCE_DIRS:
        for directory, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith(SOURCE_SUFFIXES):
                    continue
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, root)
                if relative == HEADER:
                    continue
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = blank_comments(f.read())

                def where(offset):
                    return f"{relative}:{text.count(chr(10), 0, offset) + 1}"

                for call in CALL_RE.finditer(text):
                    arguments = call_arguments(text, call.end())
                    for literal in LITERAL_RE.finditer(arguments):
                        reason = literal.group(1)
                        known = reason in constants.values()
                        problems.append(
                            f"{where(call.start())}: reason \"{reason}\" passed to "
                            f"{call.group(1)}() as a literal: use reason::{camel(reason)}"
                            + ("" if known else f" (and add it to {HEADER} and {CATALOGUE})"))
                for compare in COMPARE_RE.finditer(text):
                    reason = compare.group(1) or compare.group(2)
                    problems.append(f"{where(compare.start())}: reason \"{reason}\" compared as a "
                                    f"literal: use reason::{camel(reason)}")
                for use in USE_RE.finditer(text):
                    if use.group(1) not in constants:
                        problems.append(f"{where(use.start())}: reason::{use.group(1)} is not in "
                                        f"{HEADER}")


def scan_tests(root, constants, problems):
    """Reasons the tests expect through EXPECT_ERROR must be catalogued."""
    for directory, _, files in os.walk(os.path.join(root, "tests")):
        for name in sorted(files):
            if not name.endswith(SOURCE_SUFFIXES):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            with open(path, encoding="utf-8", errors="replace") as f:
                text = blank_comments(f.read())
            for call in EXPECT_ERROR_RE.finditer(text):
                arguments = call_arguments(text, call.end())
                if arguments.lstrip().startswith("expr,"):
                    continue  # the macro's definition
                for literal in LITERAL_RE.finditer(arguments):
                    if literal.group(1) not in constants.values():
                        line = text.count("\n", 0, call.start()) + 1
                        problems.append(f"{relative}:{line}: the test expects reason "
                                        f"\"{literal.group(1)}\", which is not in {HEADER}")


def check_catalogue(root, constants, problems):
    path = os.path.join(root, CATALOGUE)
    documented = {}
    in_catalogue = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("## "):
                in_catalogue = line.strip() == CATALOGUE_HEADING
            m = ROW_RE.match(line.rstrip("\n")) if in_catalogue else None
            if not m:
                continue
            reason, rest = m.groups()
            cells = [cell.strip() for cell in rest.split("|")]
            if reason in documented:
                problems.append(f"{CATALOGUE}:{number}: {reason} is catalogued twice "
                                f"(first on line {documented[reason]})")
            documented[reason] = number
            if len(cells) < 5 or not cells[0] or not cells[2] or not cells[4]:
                problems.append(f"{CATALOGUE}:{number}: {reason} needs a code, a description "
                                f"(when) and a client action")
            if reason not in constants.values():
                problems.append(f"{CATALOGUE}:{number}: {reason} is catalogued but not defined "
                                f"in {HEADER}")
    for name, value in sorted(constants.items(), key=lambda item: item[1]):
        if value not in documented:
            problems.append(f"{HEADER}: {value} ({name}) is not catalogued in {CATALOGUE}")
    return documented


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    root = os.path.abspath(root)
    problems = []
    constants = parse_header(root, problems)
    scan_sources(root, constants, problems)
    scan_tests(root, constants, problems)
    documented = check_catalogue(root, constants, problems)
    for problem in problems:
        print(problem)
    if problems:
        print(f"FAIL: {len(problems)} problem(s); every reason raised must be a constant in "
              f"{HEADER} and a row of {CATALOGUE}")
        return 1
    print(f"OK: {len(constants)} reasons in {HEADER}, {len(documented)} catalogued in {CATALOGUE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
