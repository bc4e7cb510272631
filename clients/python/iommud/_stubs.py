"""The generated protobuf and gRPC modules the client uses, wherever they are.

An installed package (`pip install ./clients/python`) carries them as iommud._generated (built
from proto/ by the package's build backend, imports rewritten to that package). In the source tree
they are the top-level modules CMake (`<build>/python`) or Bazel generate, found on PYTHONPATH.
"""
try:
    from iommud._generated.google.rpc import error_details_pb2, status_pb2  # noqa: F401
    from iommud._generated.iommu.v1 import iommu_pb2, iommu_pb2_grpc  # noqa: F401
except ImportError:  # the source tree: PYTHONPATH=<build>/python:clients/python
    from google.rpc import error_details_pb2, status_pb2  # noqa: F401
    from iommu.v1 import iommu_pb2, iommu_pb2_grpc  # noqa: F401
