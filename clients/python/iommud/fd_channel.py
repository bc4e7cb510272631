"""Client of iommud's fd side channel (proto/iommu/v1/fd_channel.proto).

The channel is a unix SOCK_SEQPACKET socket next to the gRPC one (default: the gRPC socket's path +
".fds") that passes what gRPC cannot carry, file descriptors (SCM_RIGHTS):

    with FdChannel("/run/iommud/iommud.sock.fds") as channel:
        region = channel.register_memory(memfd, 2 << 20, owner="vm1")  # -> MemoryRegionRef
        device_fd = channel.open_device("0000:03:00.0", owner="vm1")   # -> int, yours to close

Refusals raise IommudError (iommud.client) with the gRPC code name, the ErrorInfo reason and
metadata, as the gRPC client does. One request at a time per channel object.
"""
import array  # noqa: F401  (socket.recv_fds needs it on some Pythons)
import os
import socket

import grpc

from google.rpc import error_details_pb2
from iommu.v1 import fd_channel_pb2
from iommud.client import IommudError

# google.rpc.Code numbers -> names (grpc.StatusCode names).
_CODE_NAMES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
               "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
               "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
               "UNAUTHENTICATED"]
_MAX_REPLY_BYTES = 64 * 1024
_MAX_REPLY_FDS = 16


def _error_of(status):
    """IommudError of a non-OK google.rpc.Status."""
    code = _CODE_NAMES[status.code] if 0 <= status.code < len(_CODE_NAMES) else "UNKNOWN"
    reason, metadata = "", {}
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
            break
    return IommudError(grpc.StatusCode[code], reason, status.message, metadata)


class FdChannel:
    """A connection to the fd channel at `path`; replies are awaited at most `timeout` seconds."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as error:
            self.sock.close()
            raise IommudError(grpc.StatusCode.UNAVAILABLE, "CONNECT_FAILED",
                              f"cannot connect to the fd channel at {path}: {error}",
                              {"path": path}) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def _call(self, request, fds=()):
        socket.send_fds(self.sock, [request.SerializeToString()], list(fds))
        payload, received, _, _ = socket.recv_fds(self.sock, _MAX_REPLY_BYTES, _MAX_REPLY_FDS)
        if not payload:
            for fd in received:
                os.close(fd)
            raise IommudError(grpc.StatusCode.UNAVAILABLE, "FD_RECEIVE_FAILED", "the daemon closed the channel",
                              {})
        response = fd_channel_pb2.FdResponse.FromString(payload)
        if response.status.code != 0:
            for fd in received:
                os.close(fd)
            raise _error_of(response.status)
        return response, received

    def register_memory(self, memory_fd, size, owner=""):
        """Registers the first `size` bytes of `memory_fd` (a memfd); returns a MemoryRegionRef."""
        request = fd_channel_pb2.FdRequest(
            register_memory=fd_channel_pb2.RegisterMemoryOp(owner=owner, size=size))
        response, received = self._call(request, [memory_fd])
        for fd in received:
            os.close(fd)
        return response.region

    def open_device(self, device, owner=""):
        """The VFIO device fd of `device` (an int the caller closes)."""
        request = fd_channel_pb2.FdRequest(
            open_device=fd_channel_pb2.OpenDeviceOp(owner=owner, device=device))
        response, received = self._call(request)
        if len(received) != 1:
            for fd in received:
                os.close(fd)
            raise IommudError(grpc.StatusCode.INTERNAL, "", f"OpenDevice reply carries {len(received)} fds", {})
        return received[0]
