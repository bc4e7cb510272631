#!/usr/bin/env python3
"""The two builds and the layering agree with the tree (run by CTest, label `build`).

CMake lists every source and test by name; Bazel globs them (BUILD.bazel files). So one tree can
build a file under one and not the other: a .cc that CMake forgot still builds under Bazel, and a
test CMake forgot never runs in CI's CMake steps. This check fails, naming the file, when:
  1. a .cc file of core/, server/ or clients/ (sources, not tests) is named in no CMakeLists.txt of
     its directory or an ancestor up to its top directory;
  2. a tests/**/*_test.cc file is named in no CMakeLists.txt under tests/, or no Bazel package
     globs it (its directory has no BUILD.bazel and the one above does not glob recursively);
  3. a file under core/ includes gRPC, protobuf, Prometheus or generated proto headers (core/ is
     the transport-free half; server/ adapts it to the wire).
Usage: build_consistency_test.py REPO_ROOT
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
problems = []


def cmake_text_for(path: pathlib.Path, top: pathlib.Path) -> str:
    text = ""
    directory = path.parent
    while True:
        cmake = directory / "CMakeLists.txt"
        if cmake.exists():
            text += cmake.read_text()
        if directory == top or directory == root:
            break
        directory = directory.parent
    return text


def named(text: str, relative: str, name: str) -> bool:
    # A source is named by its file name or by its path relative to a CMakeLists.txt.
    return re.search(r"(^|[\s/(])" + re.escape(name) + r"(\s|\)|$)", text, re.M) is not None or \
        relative in text


# 1. Sources.
for top_name in ("core", "server", "clients"):
    top = root / top_name
    for source in sorted(top.rglob("*.cc")):
        relative = source.relative_to(root).as_posix()
        if "third_party" in relative or source.name.endswith("_test.cc"):
            continue
        text = cmake_text_for(source, top)
        if not named(text, source.relative_to(source.parent.parent).as_posix(), source.name):
            problems.append(f"{relative}: named in no CMakeLists.txt (CMake does not build it)")

# 2. Tests.
tests_cmake = "".join(p.read_text() for p in (root / "tests").rglob("CMakeLists.txt"))
for test in sorted((root / "tests").rglob("*_test.cc")):
    relative = test.relative_to(root).as_posix()
    if "/fuzz/" in relative or "/testing/" in relative:  # fuzz targets; test helpers
        continue
    if not named(tests_cmake, relative, test.name):
        problems.append(f"{relative}: named in no tests/**/CMakeLists.txt (CMake never runs it)")
    # Its Bazel package: the nearest directory up with a BUILD.bazel; a package above the test's
    # own directory builds it only if its iommud_tests globs recursively (tests/server's rooms).
    package = test.parent
    while not (package / "BUILD.bazel").exists() and package != root / "tests":
        package = package.parent
    build = package / "BUILD.bazel"
    if not build.exists():
        problems.append(f"{relative}: no BUILD.bazel in its directory or above (Bazel never builds it)")
    elif package != test.parent and "recursive = True" not in build.read_text():
        problems.append(f"{relative}: {build.relative_to(root)} does not glob subdirectories "
                        f"(Bazel never builds it)")

# 3. Layering.
forbidden = re.compile(r'#include\s*[<"](grpc|grpcpp|google/protobuf|prometheus|iommu/v1/|proto/)')
for source in sorted((root / "core").rglob("*")):
    if source.suffix not in (".h", ".cc"):
        continue
    for number, line in enumerate(source.read_text().splitlines(), 1):
        if forbidden.search(line):
            problems.append(f"{source.relative_to(root)}:{number}: core/ includes a transport "
                            f"header ({line.strip()})")

for problem in problems:
    print(problem)
if problems:
    print(f"FAIL: {len(problems)} problem(s)")
    sys.exit(1)
print("OK: every source and test is in both builds; core/ includes no transport header")
