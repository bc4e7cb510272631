"""Python client of iommud (iommu.v1.Iommu): Client, IommudError (a grpc.RpcError), LeaseKeeper."""
from iommud.client import Client, snake_case  # noqa: F401
from iommud.errors import IommudError  # noqa: F401
from iommud.lease import LeaseKeeper  # noqa: F401

__all__ = ["Client", "IommudError", "LeaseKeeper", "snake_case"]
