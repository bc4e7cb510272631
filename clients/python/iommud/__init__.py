"""Python client of iommud (iommu.v1.Iommu)."""
from iommud.client import Client, IommudError  # noqa: F401
