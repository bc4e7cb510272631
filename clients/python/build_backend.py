"""An in-tree PEP 517 build backend for the iommud Python client (pyproject.toml).

Why not setuptools: pip builds a package in an isolated environment and fills it from an index;
offline (and with Debian 12's setuptools, which also needs `wheel` there) that fails. This backend
needs nothing but the standard library, so `pip install ./clients/python` works offline.

The wheel holds iommud/*.py and iommud/_generated: the Python modules of proto/iommu/v1/iommu.proto
and of the vendored google/rpc protos, generated at build time by protoc and grpc_python_plugin
(Debian's protobuf-compiler and protobuf-compiler-grpc; $PROTOC / $GRPC_PYTHON_PLUGIN override),
with their imports rewritten into that package so that they never clash with other google.rpc
modules. The version is the project's (the top-level CMakeLists.txt).
"""
import base64
import hashlib
import os
import pathlib
import re
import subprocess
import tempfile
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the repository
NAME = "iommud"
PROTOS = ["iommu/v1/iommu.proto", "google/rpc/status.proto", "google/rpc/error_details.proto"]


def _version():
    text = (ROOT / "CMakeLists.txt").read_text()
    match = re.search(r"project\(iommud VERSION ([0-9.]+)", text)
    if not match:
        raise RuntimeError("no project version in CMakeLists.txt")
    return match.group(1)


def _metadata():
    return (f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {_version()}\n"
            "Summary: Python client of iommud, the control plane of a host IOMMU\n"
            "Requires-Python: >=3.9\nRequires-Dist: grpcio>=1.51\nRequires-Dist: protobuf>=3.21\n")


def _generated_modules():
    """{path in the wheel: bytes} of the generated modules, imports rewritten."""
    protoc = os.environ.get("PROTOC", "/usr/bin/protoc")
    plugin = os.environ.get("GRPC_PYTHON_PLUGIN", "/usr/bin/grpc_python_plugin")
    files = {}
    with tempfile.TemporaryDirectory() as out:
        sources = [str((ROOT / "proto" / p) if p.startswith("iommu/")
                       else (ROOT / "proto/third_party" / p)) for p in PROTOS]
        subprocess.run([protoc, f"-I{ROOT / 'proto/third_party'}", f"-I{ROOT / 'proto'}",
                        f"--python_out={out}", f"--grpc_python_out={out}",
                        f"--plugin=protoc-gen-grpc_python={plugin}", *sources], check=True)
        for path in sorted(pathlib.Path(out).rglob("*.py")):
            text = path.read_text()
            text = re.sub(r"^from (iommu\.v1|google\.rpc) import", rf"from {NAME}._generated.\1 import",
                          text, flags=re.M)
            files[f"{NAME}/_generated/{path.relative_to(out).as_posix()}"] = text.encode()
    for package in ["", "google/", "google/rpc/", "iommu/", "iommu/v1/"]:
        files[f"{NAME}/_generated/{package}__init__.py"] = b""
    return files


def _package_files():
    files = {}
    for path in sorted((HERE / NAME).rglob("*")):
        relative = path.relative_to(HERE).as_posix()
        if path.is_file() and "__pycache__" not in relative and "/_generated/" not in relative:
            files[relative] = path.read_bytes()
    files.update(_generated_modules())
    return files


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _dist_info_files():
    dist_info = f"{NAME}-{_version()}.dist-info"
    return dist_info, {
        f"{dist_info}/METADATA": _metadata().encode(),
        f"{dist_info}/WHEEL": (b"Wheel-Version: 1.0\nGenerator: iommud build_backend\n"
                               b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
        f"{dist_info}/top_level.txt": f"{NAME}\n".encode(),
    }


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    dist_info, files = _dist_info_files()
    for path, data in files.items():
        target = pathlib.Path(metadata_directory) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return dist_info


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{_version()}-py3-none-any.whl"
    dist_info, files = _dist_info_files()
    files = {**_package_files(), **files}
    records = [_record_line(path, data) for path, data in files.items()]
    records.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(records) + "\n").encode()
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / name, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path, data in files.items():
            wheel.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return name


def build_sdist(sdist_directory, config_settings=None):
    raise NotImplementedError("no sdist: build a wheel from the repository (it needs proto/)")
