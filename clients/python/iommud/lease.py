"""LeaseKeeper: keeps a group's ownership lease alive over one KeepLease stream.

    group = client.claim_ownership(group_id=3, owner="vm-7", lease_ttl_millis=30_000)
    with client.keep_lease(3, ttl=30.0, owner="vm-7") as lease:
        run_the_vm()          # renewed every ttl/3 seconds meanwhile, on a thread
        lease.check()         # raises the IommudError if the daemon refused a renewal
    # Leaving the block ends the stream; that releases nothing: the lease lapses after its TTL
    # (or call release_ownership). release=True releases the ownership on leaving instead.

    with client.keep_lease(3, ttl=30.0, owner="vm-7", bind=True) as lease:
        run_the_vm()
    # bind=True ties the ownership to the stream (docs/semantics.md "Ownership bound to a
    # stream"): the daemon releases it as soon as the stream ends, whether the block is left or
    # this process dies or loses its connection. Across a daemon restart the TTL decides.

Entering sends the first renewal and waits for its answer, so a refusal (NOT_OWNER, NO_LEASE,
LEASE_TTL_OUT_OF_RANGE, ...) raises there. A later refusal ends the stream (the daemon ends it
with its error): `alive` turns False, `error` holds the IommudError, and leaving the block raises
it (unless the block itself raised).
"""
import queue
import threading
from typing import Any, Optional

import grpc

from iommud._stubs import iommu_pb2
from iommud.errors import IommudError

__all__ = ["LeaseKeeper"]


class LeaseKeeper:
    """A KeepLease stream renewing `group_id`'s lease every `interval` seconds (default ttl/3)."""

    def __init__(self, client: Any, group_id: int, ttl: float, *, owner: str = "",
                 interval: Optional[float] = None, release: bool = False, bind: bool = False,
                 first_answer_timeout: Optional[float] = None) -> None:
        if ttl <= 0:
            raise ValueError("ttl is the lease's length in seconds: positive")
        self.interval = ttl / 3 if interval is None else interval
        if self.interval <= 0 or self.interval >= ttl:
            raise ValueError("interval must be positive and shorter than the ttl")
        self._client = client
        self._request = iommu_pb2.KeepLeaseRequest(group_id=group_id, owner=owner,
                                                   lease_ttl_millis=max(1, int(ttl * 1000)),
                                                   bind=bind)
        self._release = release
        self._first_answer_timeout = (client.timeout if first_answer_timeout is None
                                      else first_answer_timeout)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._answers = queue.Queue()  # the first answer (a Group or an IommudError) for __enter__
        self._stream = None
        self._thread = None
        self.group: Optional[iommu_pb2.Group] = None  # the latest Group the daemon answered
        self.renewals: int = 0                         # answered renewals
        self.error: Optional[IommudError] = None       # what ended the stream, if the daemon did

    @property
    def alive(self) -> bool:
        """True while the stream runs and the daemon accepted every renewal."""
        return self._thread is not None and self._thread.is_alive() and self.error is None

    def _requests(self):
        while True:
            yield self._request
            if self._stop.wait(self.interval):
                return  # half-close: the daemon ends the stream with OK

    def _receive(self):
        try:
            for group in self._stream:
                with self._lock:
                    self.group = group
                    self.renewals += 1
                    first = self.renewals == 1
                if first:
                    self._answers.put(group)
        except grpc.RpcError as rpc_error:
            if not (self._stop.is_set() and rpc_error.code() == grpc.StatusCode.CANCELLED):
                error = IommudError.from_rpc_error(rpc_error)
                with self._lock:
                    self.error = error
                self._answers.put(error)
        self._answers.put(None)  # ended without an answer (or after one)

    def start(self) -> "LeaseKeeper":
        """Opens the stream and waits for the first renewal's answer; raises its refusal."""
        if self._thread is not None:
            raise RuntimeError("a LeaseKeeper runs once")
        self._stream = self._client.stub.KeepLease(self._requests())
        self._thread = threading.Thread(target=self._receive, name="iommud-keep-lease",
                                        daemon=True)
        self._thread.start()
        try:
            first = self._answers.get(timeout=self._first_answer_timeout)
        except queue.Empty:
            self.stop()
            raise TimeoutError("KeepLease: no answer to the first renewal") from None
        if isinstance(first, IommudError):
            self.stop()
            raise first
        if first is None:
            self.stop()
            raise RuntimeError("KeepLease: the stream ended without an answer")
        return self

    def check(self) -> None:
        """Raises the IommudError that ended the stream, if the daemon refused a renewal."""
        with self._lock:
            error = self.error
        if error is not None:
            raise error

    def stop(self, timeout: Optional[float] = None) -> None:
        """Ends the stream (half-close, then cancel if it does not end) and joins the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + self._client.timeout if timeout is None else timeout)
            if self._thread.is_alive():
                self._stream.cancel()
                self._thread.join()

    def __enter__(self) -> "LeaseKeeper":
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop()
        if self._release and not self._request.bind:  # a bound one is released by the daemon
            self._client.release_ownership(group_id=self._request.group_id,
                                           owner=self._request.owner)
        if exc_type is None:
            self.check()
