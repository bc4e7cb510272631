"""The Python fd-channel client (iommud.fd_channel) against the real iommud (software backend)."""
import os
import socket
import subprocess
import tempfile
import time

import pytest

from iommud import Client, IommudError
from iommud import fd_channel
from iommud.fd_channel import FdChannel


@pytest.fixture(scope="module")
def daemon():
    state = tempfile.mkdtemp(prefix="iommud-fd-")
    log = open(os.path.join(state, "log"), "w+")
    process = subprocess.Popen(
        [os.environ["IOMMUD_BINARY"], f"--state_dir={state}", "--metrics_port=0",
         "--audit_interval=0", "--state=memory"], stderr=log)
    for _ in range(200):
        log.seek(0)
        if "serving on" in log.read():
            break
        time.sleep(0.05)
    yield state
    process.terminate()
    assert process.wait(timeout=30) == 0
    assert not os.path.exists(os.path.join(state, "iommud.sock.fds"))


def fds_path(state):
    return os.path.join(state, "iommud.sock.fds")


def memfd(size):
    fd = os.memfd_create("iommud-test")
    os.ftruncate(fd, size)
    return fd


def test_the_channel_sits_next_to_the_grpc_socket(daemon):
    import stat
    mode = os.stat(fds_path(daemon)).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660


def test_open_device_follows_ownership_and_the_backend(daemon):
    grpc_client = Client(f"unix:{daemon}/iommud.sock")
    with FdChannel(fds_path(daemon)) as channel:
        with pytest.raises(IommudError) as unowned:
            channel.open_device("0000:00:02.0", owner="vm1")
        assert (unowned.value.code, unowned.value.reason) == ("FAILED_PRECONDITION",
                                                               "GROUP_NOT_OWNED")
        with pytest.raises(IommudError) as unknown:
            channel.open_device("0000:ff:00.0", owner="vm1")
        assert unknown.value.reason == "DEVICE_NOT_FOUND"

        group = grpc_client.device("0000:00:02.0").group_id
        grpc_client.call("ClaimOwnership", group_id=group, owner="vm1")
        with pytest.raises(IommudError) as blocked:
            channel.open_device("0000:00:02.0", owner="vm1")
        assert blocked.value.reason == "GROUP_NOT_ATTACHED"

        domain = grpc_client.call("AllocDomain", unit="smmu0", owner="vm1").id
        grpc_client.call("AttachGroup", group_id=group, domain_id=domain, owner="vm1")
        with pytest.raises(IommudError) as other:
            channel.open_device("0000:00:02.0", owner="vm2")
        assert (other.value.code, other.value.reason) == ("PERMISSION_DENIED", "NOT_OWNER")
        # The owner passes every rule; the software backend has no VFIO device fds to give.
        with pytest.raises(IommudError) as no_fds:
            channel.open_device("0000:00:02.0", owner="vm1")
        assert (no_fds.value.code, no_fds.value.reason) == ("FAILED_PRECONDITION", "NO_DEVICE_FDS")
    grpc_client.close()


def test_register_memory_checks_the_memfd_first(daemon):
    with FdChannel(fds_path(daemon)) as channel:
        fd = memfd(4096)
        try:
            with pytest.raises(IommudError) as small:
                channel.register_memory(fd, 8192, owner="vm1")
            assert small.value.reason == "MEMORY_FD_TOO_SMALL"
            assert small.value.metadata["file_size"] == "4096"
            # A good memfd becomes a process-memory region of the owner.
            region = channel.register_memory(fd, 4096, owner="vm1")
            assert region.id > 0 and region.size == 4096
        finally:
            os.close(fd)


def test_bad_input_gets_the_catalogued_reasons(daemon):
    with FdChannel(fds_path(daemon)) as channel:
        sock = channel.sock
        socket.send_fds(sock, [b"\xff\xff not a request"], [])
        from iommu.v1 import fd_channel_pb2
        payload, _, _, _ = socket.recv_fds(sock, 65536, 16)
        error = fd_channel._error_of(fd_channel_pb2.FdResponse.FromString(payload).status)
        assert (error.code, error.reason) == ("INVALID_ARGUMENT", "MALFORMED_REQUEST")
        with pytest.raises(IommudError) as wrong:
            channel._call(fd_channel_pb2.FdRequest(
                register_memory=fd_channel_pb2.RegisterMemoryOp(size=4096)))
        assert (wrong.value.code, wrong.value.reason) == ("INVALID_ARGUMENT", "WRONG_FD_COUNT")


def test_a_missing_channel_is_connect_failed(daemon):
    with pytest.raises(IommudError) as missing:
        FdChannel(os.path.join(daemon, "nope.fds"))
    assert missing.value.reason == "CONNECT_FAILED"
