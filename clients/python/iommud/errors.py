"""IommudError: a refused call, a grpc.RpcError carrying the google.rpc.ErrorInfo of the status."""
import grpc

from iommud._stubs import error_details_pb2, status_pb2


class _Code(str):
    """The status code's name ("NOT_FOUND") that, called, is the grpc.StatusCode: error.code()
    works as on any grpc.RpcError, and error.code == "NOT_FOUND" as in earlier versions."""

    def __new__(cls, status_code):
        name = str.__new__(cls, status_code.name)
        name._status_code = status_code
        return name

    def __call__(self):
        return self._status_code


class IommudError(grpc.RpcError):
    """A call iommud (or gRPC) refused.

    A grpc.RpcError like the one the stub raised: code() (a grpc.StatusCode), details() (the
    message) and trailing_metadata(); plus `reason` (the ErrorInfo reason, e.g. "GROUP_IN_USE";
    docs/errors.md) and `metadata` (the ErrorInfo metadata: the ids involved) and `message`.
    `error.code` is also the code's name as a string (error.code == "NOT_FOUND").
    """

    def __init__(self, code, reason, message, metadata=None, trailing_metadata=()):
        super().__init__(f"{code.name} {reason}: {message}")
        self._code = code
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self._trailing_metadata = tuple(trailing_metadata or ())

    @property
    def code(self):
        return _Code(self._code)

    def details(self):
        return self.message

    def trailing_metadata(self):
        return self._trailing_metadata

    def __str__(self):
        return f"{self._code.name} {self.reason}: {self.message}"

    @classmethod
    def from_rpc_error(cls, error):
        """Decodes the ErrorInfo of `error` (a grpc.RpcError from a stub call)."""
        reason, metadata = "", {}
        trailing = tuple(error.trailing_metadata() or ())
        for key, value in trailing:
            if key == "grpc-status-details-bin":
                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    info = error_details_pb2.ErrorInfo()
                    if detail.Unpack(info):
                        reason, metadata = info.reason, dict(info.metadata)
        code = error.code()
        # A status without ErrorInfo (gRPC's own, e.g. a deadline the client enforced): the
        # code's name, as the daemon would send it (docs/errors.md).
        return cls(code, reason or code.name, error.details() or "", metadata, trailing)
