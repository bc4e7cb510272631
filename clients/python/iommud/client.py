"""A thin synchronous client of iommud with errors decoded from google.rpc.ErrorInfo."""
import grpc

from google.rpc import error_details_pb2, status_pb2
from iommu.v1 import iommu_pb2, iommu_pb2_grpc


class IommudError(Exception):
    """A refused call: the gRPC code name, the ErrorInfo reason and metadata."""

    def __init__(self, code, reason, message, metadata):
        super().__init__(f"{code} {reason}: {message}")
        self.code, self.reason, self.message, self.metadata = code, reason, message, metadata


def _decode(error):
    reason, metadata = "", {}
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason, metadata = info.reason, dict(info.metadata)
    return IommudError(error.code().name, reason, error.details(), metadata)


class Client:
    """client.call("ClaimOwnership", group_id=3, owner="vmm") -> the response message.

    Every RPC of iommu.v1.Iommu by name with the request's fields as keyword arguments.
    """

    def __init__(self, target, timeout=10.0):
        self.channel = grpc.insecure_channel(target)
        grpc.channel_ready_future(self.channel).result(timeout=5)
        self.stub = iommu_pb2_grpc.IommuStub(self.channel)
        self.timeout = timeout

    def call(self, method, **fields):
        request_type = getattr(iommu_pb2, method + "Request")
        try:
            return getattr(self.stub, method)(request_type(**fields), timeout=self.timeout)
        except grpc.RpcError as error:
            raise _decode(error) from None

    def close(self):
        self.channel.close()

    # Helpers the scenarios share.
    def device(self, name):
        return self.call("GetDevice", device=name)

    def leaks(self):
        return list(self.call("Audit").leaks)

    def register_memory(self, size, owner=""):
        """Registers an (emulated) memory region; returns the MemoryRegion."""
        return self.call("RegisterMemory", size=size, owner=owner)

    def map_region(self, domain_id, iova, region_id, offset, size, owner="", prot=0):
        """Maps [offset, offset + size) of a memory region at iova; returns the Mapping."""
        return self.call("Map", domain_id=domain_id, iova=iova, region_id=region_id,
                         region_offset=offset, size=size, prot=prot, owner=owner).mapping

    def inject(self, point, nth=1, code="UNAVAILABLE", **extra):
        spec = iommu_pb2.FaultSpec(point=point, mode=iommu_pb2.FaultSpec.NTH, n=nth, code=code,
                                   **extra)
        return self.call("InjectFault", spec=spec).fault_id
