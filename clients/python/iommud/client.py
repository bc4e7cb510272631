"""A synchronous client of iommud (iommu.v1.Iommu): one method per RPC, errors as IommudError.

    from iommud import Client, IommudError
    with Client("unix:/run/iommud/iommud.sock") as client:
        group = client.claim_ownership(group_id=3, owner="vm-7")
        try:
            client.free_domain(domain_id=3)
        except IommudError as error:      # a grpc.RpcError
            print(error.code(), error.reason, error.metadata)

Every unary RPC is a method named in snake_case (ClaimOwnership -> claim_ownership) taking the
request message or its fields as keyword arguments and returning the response message. A
mutating call (its request has a request_id) gets a random request id unless one is given, and is
resent with that same id up to `retries` times while the daemon is UNAVAILABLE: the daemon acts
once (README "Request ids"). `watch_events` yields the events of a WatchEvents stream;
`keep_lease` keeps an ownership lease alive over a KeepLease stream (a context manager).
"""
import re
import time
import uuid

import grpc

from iommud._stubs import iommu_pb2, iommu_pb2_grpc
from iommud.errors import IommudError
from iommud.lease import LeaseKeeper

__all__ = ["Client", "IommudError", "snake_case"]

_UNMAP_ALL = (1 << 64) - 1  # Unmap's size that, with iova 0, means every mapping


def snake_case(name):
    """ClaimOwnership -> claim_ownership."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _read(path):
    with open(path, "rb") as file:
        return file.read()


def _credentials(tls_ca, tls_cert, tls_key):
    if not tls_ca:
        raise ValueError("TLS needs tls_ca, the CA of the daemon's certificate")
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("a client certificate (tls_cert) needs its key (tls_key) and the other way round")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls_ca),
        private_key=_read(tls_key) if tls_key else None,
        certificate_chain=_read(tls_cert) if tls_cert else None)


class Client:
    """A connection to one iommud.

    target: "unix:/path/to/iommud.sock" or "host:port" (TCP: with tls_ca, tls_cert, tls_key and
    optionally tls_server_name, iommud's mutual TLS). timeout: deadline of each call in seconds.
    connect_timeout: how long the constructor waits for the connection (grpc.FutureTimeoutError).
    retries / retry_backoff: resends of a mutating call while UNAVAILABLE, same request id.
    keepalive_time: seconds between keepalive pings on an idle connection (None: gRPC's default);
    at least the daemon's --keepalive_min_client_interval (10 s).
    """

    def __init__(self, target, timeout=10.0, *, tls_ca=None, tls_cert=None, tls_key=None,
                 tls_server_name=None, connect_timeout=5.0, retries=0, retry_backoff=0.1,
                 keepalive_time=None):
        options = []
        if keepalive_time is not None:
            options += [("grpc.keepalive_time_ms", int(keepalive_time * 1000)),
                        ("grpc.keepalive_permit_without_calls", 1)]
        if tls_ca or tls_cert or tls_key or tls_server_name:
            if target.startswith("unix:"):
                raise ValueError("TLS options apply to host:port targets, not unix sockets")
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            self.channel = grpc.secure_channel(target, _credentials(tls_ca, tls_cert, tls_key),
                                               options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        grpc.channel_ready_future(self.channel).result(timeout=connect_timeout)
        self.stub = iommu_pb2_grpc.IommuStub(self.channel)
        self.timeout = timeout
        self.retries = retries
        self.retry_backoff = retry_backoff

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.channel.close()

    def call(self, method, request=None, *, request_id=None, **fields):
        """The RPC `method` ("ClaimOwnership") with `request` or the request's fields."""
        method_descriptor = _SERVICE.methods_by_name.get(method)
        if method_descriptor is None or method_descriptor.server_streaming or \
                method_descriptor.client_streaming:
            raise ValueError(f"{method!r} is not a unary RPC of iommu.v1.Iommu")
        request_type = getattr(iommu_pb2, method_descriptor.input_type.name)
        if request is None:
            request = request_type(**fields)
        elif fields:
            raise TypeError("give the request message or its fields, not both")
        mutating = "request_id" in request_type.DESCRIPTOR.fields_by_name
        if mutating:
            if request_id is not None:
                request.request_id = request_id
            elif not request.request_id:
                request.request_id = "py-" + uuid.uuid4().hex
        elif request_id is not None:
            raise TypeError(f"{method} takes no request id")
        attempts = 1 + (self.retries if mutating else 0)
        for attempt in range(attempts):
            try:
                return getattr(self.stub, method)(request, timeout=self.timeout)
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE and attempt + 1 < attempts:
                    time.sleep(self.retry_backoff * (2 ** attempt))
                    continue
                raise IommudError.from_rpc_error(error) from None
        raise AssertionError("unreachable")

    def watch_events(self, request=None, timeout=None, **fields):
        """Yields the events of a WatchEvents stream (a snapshot first) until it ends.

        The stream's end other than by the caller is an IommudError (e.g. UNAVAILABLE
        SERVER_SHUTTING_DOWN when the daemon stops: reconnect and watch again).
        """
        stream = self.stub.WatchEvents(request or iommu_pb2.WatchEventsRequest(**fields),
                                       timeout=timeout)
        try:
            for event in stream:
                yield event
        except grpc.RpcError as error:
            raise IommudError.from_rpc_error(error) from None
        finally:
            stream.cancel()

    def keep_lease(self, group_id, ttl, *, owner="", interval=None, release=False, bind=False):
        """A LeaseKeeper (iommud/lease.py): `with client.keep_lease(3, ttl=30.0) as lease:` renews
        group 3's lease (ttl seconds) every `interval` (ttl/3) seconds until the block ends.
        bind=True binds the ownership to the stream: its end (the block left, the process dead)
        releases it at once."""
        return LeaseKeeper(self, group_id, ttl, owner=owner, interval=interval, release=release,
                           bind=bind)

    # Helpers the scenarios share.
    def device(self, name):
        return self.get_device(device=name)

    def leaks(self):
        return list(self.audit().leaks)

    def map_region(self, domain_id, iova, region_id, offset, size, owner="", prot=0):
        """Maps [offset, offset + size) of a memory region at iova; returns the Mapping."""
        return self.call("Map", domain_id=domain_id, iova=iova, region_id=region_id,
                         region_offset=offset, size=size, prot=prot, owner=owner).mapping

    def unmap_all(self, domain_id, owner=""):
        """Unmaps every mapping of the domain (Unmap of iova 0, size 2^64 - 1); returns the bytes."""
        return self.call("Unmap", domain_id=domain_id, iova=0, size=_UNMAP_ALL,
                         owner=owner).bytes_unmapped

    def iova_ranges(self, domain_id):
        """The domain's usable IOVA ranges (GetIovaRanges) as [(start, size), ...], ascending."""
        return [(r.start, r.size) for r in self.get_iova_ranges(domain_id=domain_id).ranges]

    def replace(self, group_id, from_domain_id, to_domain_id, owner=""):
        """ReplaceDomain: moves the attached group straight to another domain; returns the Group."""
        return self.call("ReplaceDomain", group_id=group_id, from_domain_id=from_domain_id,
                         to_domain_id=to_domain_id, owner=owner)

    def inject(self, point, nth=1, code="UNAVAILABLE", **extra):
        spec = iommu_pb2.FaultSpec(point=point, mode=iommu_pb2.FaultSpec.NTH, n=nth, code=code,
                                   **extra)
        return self.inject_fault(spec=spec).fault_id


_SERVICE = iommu_pb2.DESCRIPTOR.services_by_name["Iommu"]


def _unary_method(name, method):
    def rpc(self, request=None, *, request_id=None, **fields):
        return self.call(name, request, request_id=request_id, **fields)

    rpc.__name__ = snake_case(name)
    rpc.__qualname__ = f"Client.{rpc.__name__}"
    rpc.__doc__ = (f"iommu.v1.Iommu/{name}: {method.input_type.name} (or its fields) -> "
                   f"{method.output_type.name}.")
    return rpc


for _name, _method in _SERVICE.methods_by_name.items():
    if not (_method.client_streaming or _method.server_streaming):
        setattr(Client, snake_case(_name), _unary_method(_name, _method))
del _name, _method
