#!/usr/bin/env python3
"""deploy/container/Containerfile builds from this repository with Debian 12 packages only.

There is no docker or podman on CI, so the recipe is checked statically, against the files it must
agree with:
  1. two stages, FROM debian:12 (build) and debian:12-slim (the image); nothing else is pulled;
  2. every package the build stage installs is in deploy/debian-packages.txt, and every build
     package of that list it needs (compilers, build tools, -dev libraries) is there;
  3. the image installs nothing but the Debian package the build stage made (cpack -G DEB), without
     recommends, so it gets the run-time libraries through the package's Depends;
  4. its ENTRYPOINT is where the package puts iommud, and the flags of its CMD and of the
     DaemonSet's args are flags the built iommud accepts (`iommud --help`);
  5. the DaemonSet's image is the tag the recipe's header says to build, with the project version
     (CMakeLists.txt's project(VERSION));
  6. the -D options the recipe passes exist in CMakeLists.txt;
  7. the package's postinst creates the group in that image: run with a PATH holding only what
     debian:12-slim has (no systemd-sysusers, no adduser), it calls groupadd.
Usage: container_recipe_test.py IOMMUD [REPO_ROOT] (default: this file's ../..)
"""
import json
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

import yaml

iommud = sys.argv[1]
root = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else pathlib.Path(__file__).parents[2])
version = re.search(r"^project\(iommud VERSION ([0-9.]+)", (root / "CMakeLists.txt").read_text(),
                    re.M).group(1)
deploy = root / "deploy"
recipe_path = deploy / "container" / "Containerfile"
problems = []


def problem(text):
    problems.append(text)
    print("FAIL:", text, file=sys.stderr)


def instructions(text):
    """(KEYWORD, argument) per instruction: continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, argument = pending.partition(" ")
        out.append((keyword.upper(), argument.strip()))
        pending = ""
    if pending:
        problem(f"unterminated continuation line: {pending!r}")
    return out


def apt_installs(run_argument):
    """The operands of each `apt-get install` in a RUN's shell command (options dropped)."""
    packages = []
    for command in re.split(r"&&|;|\|\|", run_argument):
        words = shlex.split(command)
        if "apt-get" in words and "install" in words:
            operands = words[words.index("install") + 1:]
            packages.append([w for w in operands if not w.startswith("-")])
            if "--no-install-recommends" not in operands:
                problem(f"apt-get install without --no-install-recommends: {command.strip()}")
        elif words and words[0] in ("apt", "dpkg", "pip", "pip3", "curl", "wget"):
            problem(f"installs or fetches outside apt-get: {command.strip()}")
    return packages


def package_list(name):
    return {line.strip() for line in (deploy / name).read_text().splitlines()
            if line.strip() and not line.startswith("#")}


steps = instructions(recipe_path.read_text())
stages = []  # [(from argument, [(keyword, argument)])]
for keyword, argument in steps:
    if keyword == "FROM":
        stages.append((argument, []))
    elif not stages:
        problem(f"{keyword} before the first FROM")
    else:
        stages[-1][1].append((keyword, argument))

# 1. The stages and their base images.
if [s[0] for s in stages] != ["debian:12 AS build", "debian:12-slim"]:
    problem(f"stages are {[s[0] for s in stages]}, want ['debian:12 AS build', 'debian:12-slim']")
else:
    build_steps, image_steps = stages[0][1], stages[1][1]

    # 2. The build stage's packages.
    build_packages = [p for k, a in build_steps if k == "RUN" for ps in apt_installs(a) for p in ps]
    listed = package_list("debian-packages.txt")
    for p in build_packages:
        if p not in listed:
            problem(f"the build stage installs {p}, not in deploy/debian-packages.txt")
    # Build packages of the list the image's build does not need, and why.
    not_needed = {
        "clang": "gcc builds the release",
        "libclang-rt-14-dev": "sanitizer builds only",
        "libbenchmark-dev": "-DIOMMUD_BUILD_BENCHMARKS=OFF",
    }
    build_tools = {"build-essential", "dpkg-dev", "file", "cmake", "ninja-build", "pkg-config",
                   "protobuf-compiler", "protobuf-compiler-grpc"}
    for p in sorted(listed):
        needed = p.endswith("-dev") or p in build_tools
        if needed and p not in not_needed and p not in build_packages:
            problem(f"deploy/debian-packages.txt has build package {p}; the build stage lacks it")
    if not any(k == "COPY" and a.split()[0] == "." for k, a in build_steps):
        problem("the build stage does not COPY the repository (COPY . ...)")
    build_runs = " ".join(a for k, a in build_steps if k == "RUN")
    if "cpack -G DEB" not in build_runs:
        problem("the build stage does not make the Debian package (cpack -G DEB)")
    for target in ("iommud", "iommuctl"):
        if not re.search(rf"--target [^&]*\b{target}\b", build_runs):
            problem(f"the build stage does not build {target}")

    # 6. -D options.
    cmake_lists = (root / "CMakeLists.txt").read_text()
    for option in re.findall(r"-D(IOMMUD_[A-Z_]+)=", build_runs):
        if option not in cmake_lists:
            problem(f"the recipe sets -D{option}, which CMakeLists.txt does not know")

    # 3. The image: only the package from the build stage.
    copies = [a for k, a in image_steps if k == "COPY"]
    debs = []
    for copy in copies:
        words = copy.split()
        if words[0] != "--from=build" or not words[-2].endswith(".deb"):
            problem(f"the image copies something other than the built package: COPY {copy}")
        else:
            debs.append(words[-1])
    image_packages = [p for k, a in image_steps if k == "RUN" for ps in apt_installs(a) for p in ps]
    if not debs or image_packages != debs:
        problem(f"the image installs {image_packages}; want exactly the copied package {debs}")
    if any(k == "ADD" for k, _ in image_steps + build_steps):
        problem("ADD (may fetch URLs): use COPY")

    # 4. Entrypoint and flags.
    entrypoint = [json.loads(a) for k, a in image_steps if k == "ENTRYPOINT"]
    install_rules = (root / "cmake" / "Install.cmake").read_text()
    if entrypoint != [["/usr/sbin/iommud"]]:
        problem(f"ENTRYPOINT {entrypoint}, want [\"/usr/sbin/iommud\"]")
    if 'install(TARGETS iommud RUNTIME DESTINATION "${CMAKE_INSTALL_SBINDIR}"' not in install_rules:
        problem("cmake/Install.cmake no longer installs iommud into sbin (the ENTRYPOINT)")
    cmd = [json.loads(a) for k, a in image_steps if k == "CMD"]
    daemonset = yaml.safe_load((deploy / "kubernetes" / "daemonset.yaml").read_text())
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    help_text = subprocess.run([iommud, "--help"], capture_output=True, text=True).stdout
    known = set(re.findall(r"^\s+--([a-z_0-9]+)", help_text, re.M))
    if len(known) < 10:
        problem(f"`iommud --help` listed {len(known)} flags: {help_text[:300]!r}")
    for where, args in (("CMD", cmd[0] if cmd else []), ("DaemonSet args", container["args"])):
        if not args:
            problem(f"{where}: no arguments")
        for arg in args:
            name = re.match(r"--([a-z_0-9-]+)", arg)
            if not name or name.group(1).replace("-", "_") not in known:
                problem(f"{where}: {arg} is not a flag of iommud")

    # 5. The image name.
    tag = re.search(r"build -f deploy/container/Containerfile -t (\S+) \.", recipe_path.read_text())
    if not tag:
        problem("the recipe's header does not say how to build it (docker build -f ... -t TAG .)")
    elif tag.group(1) != container["image"] or not container["image"].endswith(":" + version):
        problem(f"the DaemonSet runs {container['image']}; the recipe builds {tag.group(1)}; "
                f"the project version is {version}")

# .dockerignore keeps local build trees out of the build context.
ignore = (root / ".dockerignore").read_text().split()
for pattern in ("build*", ".git"):
    if pattern not in ignore:
        problem(f".dockerignore lacks {pattern}")

# 7. The postinst in an image without systemd or adduser.
with tempfile.TemporaryDirectory() as tmp:
    bin_dir = pathlib.Path(tmp) / "bin"
    bin_dir.mkdir()
    calls = pathlib.Path(tmp) / "calls"
    for tool, status in (("getent", 2), ("groupadd", 0)):
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >>"{calls}"\nexit {status}\n')
        stub.chmod(0o755)
    env = {"PATH": str(bin_dir)}
    postinst = deploy / "debian" / "postinst"
    run = subprocess.run(["/bin/sh", str(postinst), "configure"], env=env, capture_output=True,
                         text=True)
    recorded = calls.read_text().splitlines() if calls.exists() else []
    if run.returncode != 0:
        problem(f"postinst configure without systemd-sysusers/adduser exited {run.returncode}: "
                f"{run.stderr.strip()}")
    if "groupadd --system iommud" not in recorded:
        problem(f"postinst did not create the group with groupadd: calls {recorded}")

if problems:
    sys.exit(f"{len(problems)} problem(s)")
print(f"ok: {recipe_path.relative_to(root)} ({len(steps)} instructions)")
