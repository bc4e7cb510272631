"""The Python client as a package and its API, against the real iommud.

- `pip install ./clients/python` into a fresh venv (with Debian's grpcio and protobuf, offline:
  --no-index) gives a package whose `import iommud` works from any directory, stubs included, with
  type stubs (.pyi) for the messages and for every method of Client;
- one snake_case method per unary RPC, returning the response message; refusals are IommudError,
  a grpc.RpcError with code(), details() and the ErrorInfo reason and metadata;
- mutating calls carry a request id (a retry with the same id acts once), TLS options are checked,
  watch_events yields the snapshot and ends with an IommudError when the daemon stops;
- keep_lease (a LeaseKeeper, a context manager) keeps a 1 s lease for 2.5 s over one KeepLease
  stream, the lease lapses once the block ends, and a refused renewal raises; with bind=True the
  ownership is released as soon as the block ends or the process holding it is killed.
Every test cleans up what it created.
"""
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import grpc
import pytest

from iommud import Client, IommudError, snake_case

PACKAGE = pathlib.Path(__file__).resolve().parents[3] / "clients/python"


def start_daemon(state):
    log = open(os.path.join(state, "log"), "w+")
    process = subprocess.Popen(
        [os.environ["IOMMUD_BINARY"], f"--state_dir={state}", "--metrics_port=0",
         "--audit_interval=0"], stderr=log)
    for _ in range(200):
        log.seek(0)
        if "serving on" in log.read():
            break
        time.sleep(0.05)
    return process, f"unix:{state}/iommud.sock"


@pytest.fixture(scope="module")
def daemon():
    with tempfile.TemporaryDirectory(prefix="iommud-pkg-") as state:
        process, target = start_daemon(state)
        yield target
        process.terminate()
        assert process.wait(timeout=30) == 0


@pytest.fixture
def client(daemon):
    with Client(daemon) as c:
        yield c


def test_methods_are_snake_case_rpcs(client):
    assert snake_case("ClaimOwnership") == "claim_ownership"
    units = client.list_units()
    assert [u.name for u in units.units][:1] == ["smmu0"]
    assert client.get_device(device="0000:00:02.0").name == "0000:00:02.0"
    assert "GetDevice" in Client.get_device.__doc__
    assert client.call("GetDevice", device="0000:00:02.0").name == "0000:00:02.0"  # still works


def test_per_device_attach_and_detach(client):
    for name, rid in (("0000:09:10.0", 0x990), ("0000:09:11.0", 0x998)):
        client.probe_device(unit="smmu0", device=name, rid=rid, alias_rids=[0x98F])
    group = client.device("0000:09:10.0").group_id
    client.claim_ownership(group_id=group, owner="vm-pd")
    domain = client.alloc_domain(unit="smmu0", owner="vm-pd").id
    other = client.alloc_domain(unit="smmu0", owner="vm-pd").id
    attached = client.attach_device(device="0000:09:10.0", domain_id=domain, owner="vm-pd")
    assert list(attached.attached_devices) == ["0000:09:10.0"]
    with pytest.raises(IommudError) as refused:
        client.attach_device(device="0000:09:11.0", domain_id=other, owner="vm-pd")
    assert refused.value.reason == "GROUP_ATTACHED_ELSEWHERE"
    joined = client.attach_device(device="0000:09:11.0", domain_id=domain, owner="vm-pd")
    assert list(joined.attached_devices) == ["0000:09:10.0", "0000:09:11.0"]
    assert client.device("0000:09:11.0").attached
    left = client.detach_device(device="0000:09:10.0", domain_id=domain, owner="vm-pd")
    assert left.domain_id == domain and list(left.attached_devices) == ["0000:09:11.0"]
    last = client.detach_device(device="0000:09:11.0", domain_id=domain, owner="vm-pd")
    assert last.domain_id == last.blocking_domain_id and not last.attached_devices
    client.free_domain(domain_id=domain, owner="vm-pd")
    client.free_domain(domain_id=other, owner="vm-pd")
    client.release_ownership(group_id=group, owner="vm-pd")
    for name in ("0000:09:10.0", "0000:09:11.0"):
        client.release_device(device=name)


def test_refusals_are_rpc_errors_with_the_reason(client):
    with pytest.raises(IommudError) as caught:
        client.get_device(device="0000:99:00.0")
    error = caught.value
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.reason == "DEVICE_NOT_FOUND"
    assert error.metadata == {"device": "0000:99:00.0"}
    assert "0000:99:00.0" in error.details()
    assert str(error).startswith("NOT_FOUND DEVICE_NOT_FOUND: ")
    with pytest.raises(ValueError):
        client.call("WatchEvents")


def test_mutations_carry_request_ids(client):
    first = client.probe_device(unit="smmu0", device="0000:07:00.0", rid=0x700,
                                request_id="py-test-probe-1")
    try:
        # A retry with the same id is answered with the first reply and probes nothing new.
        again = client.probe_device(unit="smmu0", device="0000:07:00.0", rid=0x700,
                                    request_id="py-test-probe-1")
        assert again == first
        # Without an id one is made up: a second probe of the same device is refused.
        with pytest.raises(IommudError) as caught:
            client.probe_device(unit="smmu0", device="0000:07:00.0", rid=0x700)
        assert caught.value.reason == "DEVICE_EXISTS"
        with pytest.raises(TypeError):
            client.get_device(device="0000:07:00.0", request_id="x")
    finally:
        client.release_device(device="0000:07:00.0")


def test_tls_options_are_checked(daemon):
    with pytest.raises(ValueError, match="not unix sockets"):
        Client(daemon, tls_ca="/nonexistent")
    with pytest.raises(ValueError, match="tls_ca"):
        Client("localhost:1", tls_cert="c.pem", tls_key="k.pem")
    with pytest.raises(ValueError, match="its key"):
        Client("localhost:1", tls_ca=__file__, tls_cert="c.pem")


def test_watch_ends_with_server_shutting_down():
    with tempfile.TemporaryDirectory(prefix="iommud-watch-") as state:
        process, target = start_daemon(state)
        try:
            with Client(target) as client:
                events = client.watch_events()
                first = next(events)
                assert first.kind != 0
                process.terminate()
                with pytest.raises(IommudError) as caught:
                    for _ in events:
                        pass
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                assert caught.value.reason == "SERVER_SHUTTING_DOWN"
        finally:
            process.terminate()
            assert process.wait(timeout=30) == 0


def free_group(client):
    for group in client.list_groups().groups:
        if not group.owner and group.owner_cnt == 0:
            return group.id
    pytest.fail("no unowned group in the daemon's topology")


def test_keep_lease_keeps_the_lease_until_the_block_ends(client):
    group_id = free_group(client)
    claimed = client.claim_ownership(group_id=group_id, owner="py-lease", lease_ttl_millis=1000)
    try:
        with client.keep_lease(group_id, ttl=1.0, owner="py-lease", interval=0.25) as lease:
            assert lease.alive
            assert lease.group.id == group_id
            time.sleep(2.5)  # 2.5 lease lengths: only the renewals keep it
            group = client.get_group(group_id=group_id)
            assert group.owner.endswith("/py-lease"), group
            assert lease.renewals >= 5
            assert lease.group.lease_expiry_unix_nanos > claimed.lease_expiry_unix_nanos
            assert lease.alive
        assert not lease.alive
        # Ending the stream released nothing; the lease lapses and the reaper releases it.
        assert client.get_group(group_id=group_id).owner.endswith("/py-lease")
        deadline = time.monotonic() + 10
        while client.get_group(group_id=group_id).owner and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get_group(group_id=group_id).owner == ""
    finally:
        if client.get_group(group_id=group_id).owner:
            client.release_ownership(group_id=group_id, owner="py-lease")


def test_keep_lease_refusals_raise(client):
    group_id = free_group(client)
    client.claim_ownership(group_id=group_id, owner="py-lease", lease_ttl_millis=5000)
    try:
        # Another owner's lease: refused at the first renewal, when the block is entered.
        with pytest.raises(IommudError) as caught:
            with client.keep_lease(group_id, ttl=5.0, owner="py-other"):
                pytest.fail("entered the block of a refused lease")
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert caught.value.reason == "NOT_OWNER"
        # Refused later (the ownership was released meanwhile): alive turns False, leaving raises.
        with pytest.raises(IommudError) as caught:
            with client.keep_lease(group_id, ttl=5.0, owner="py-lease", interval=0.2) as lease:
                client.release_ownership(group_id=group_id, owner="py-lease")
                deadline = time.monotonic() + 10
                while lease.alive and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not lease.alive
                assert lease.error is not None
        assert caught.value is lease.error
        with pytest.raises(ValueError):
            client.keep_lease(group_id, ttl=1.0, interval=2.0)
    finally:
        if client.get_group(group_id=group_id).owner:
            client.release_ownership(group_id=group_id, owner="py-lease")
    # With release=True leaving the block releases the ownership at once.
    client.claim_ownership(group_id=group_id, owner="py-lease", lease_ttl_millis=5000)
    with client.keep_lease(group_id, ttl=5.0, owner="py-lease", release=True):
        assert client.get_group(group_id=group_id).owner.endswith("/py-lease")
    assert client.get_group(group_id=group_id).owner == ""


def wait_unowned(client, group_id, seconds=10):
    deadline = time.monotonic() + seconds
    while client.get_group(group_id=group_id).owner and time.monotonic() < deadline:
        time.sleep(0.02)
    return client.get_group(group_id=group_id).owner == ""


def test_a_bound_lease_is_released_when_its_stream_ends(client):
    group_id = free_group(client)
    client.claim_ownership(group_id=group_id, owner="py-bound", lease_ttl_millis=600_000)
    try:
        with client.keep_lease(group_id, ttl=600.0, owner="py-bound", interval=1.0,
                               bind=True) as lease:
            assert lease.group.lease_bound
            assert client.get_group(group_id=group_id).lease_bound
        started = time.monotonic()
        assert wait_unowned(client, group_id)  # at once, not after the 10-minute TTL
        assert time.monotonic() - started < 10
    finally:
        if client.get_group(group_id=group_id).owner:
            client.release_ownership(group_id=group_id, owner="py-bound")


def test_a_bound_lease_is_released_when_its_holder_is_killed(client, daemon):
    group_id = free_group(client)
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from iommud import Client
with Client({daemon!r}) as client:
    client.claim_ownership(group_id={group_id}, owner="py-held", lease_ttl_millis=600_000)
    with client.keep_lease({group_id}, ttl=600.0, owner="py-held", interval=1.0, bind=True):
        print("bound", flush=True)
        time.sleep(600)
"""], stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        assert holder.stdout.readline().strip() == "bound"
        group = client.get_group(group_id=group_id)
        assert group.owner.endswith("/py-held") and group.lease_bound
        holder.kill()  # SIGKILL: no clean-up runs, the kernel closes the connection
        holder.wait(timeout=30)
        assert wait_unowned(client, group_id)
    finally:
        holder.kill()
        holder.wait(timeout=30)
        if client.get_group(group_id=group_id).owner:
            client.release_ownership(group_id=group_id, owner="py-held", force=True)


@pytest.mark.skipif(not (PACKAGE / "pyproject.toml").exists() or
                    not (PACKAGE.parents[1] / "proto/iommu/v1/iommu.proto").exists(),
                    reason="needs the repository's clients/python and proto/")
def test_pip_install_offline_and_import_anywhere(daemon):
    with tempfile.TemporaryDirectory(prefix="iommud-venv-") as tmp:
        venv = pathlib.Path(tmp) / "venv"
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
                       check=True)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([str(venv / "bin/pip"), "install", "--no-index", "--quiet", str(PACKAGE)],
                       check=True, env=env, cwd=tmp)
        check = (
            "import grpc, iommud\n"
            "assert iommud.__file__.startswith(sys.argv[2]), iommud.__file__\n"
            "assert issubclass(iommud.IommudError, grpc.RpcError)\n"
            "import os, re\n"
            "stub = open(os.path.join(os.path.dirname(iommud.__file__), 'client.pyi')).read()\n"
            "typed = set(re.findall(r'^    def (\\w+)', stub, re.M)) - {'__init__', '__enter__', '__exit__'}\n"
            "public = {m for m in dir(iommud.Client) if not m.startswith('_')}\n"
            "assert typed == public, (typed ^ public)\n"
            "from iommud._generated.iommu.v1 import iommu_pb2\n"
            "assert os.path.exists(iommu_pb2.__file__ + 'i')  # iommu_pb2.pyi\n"
            "with iommud.Client(sys.argv[1]) as c:\n"
            "    print(c.get_device(device='0000:00:02.0').name)\n")
        result = subprocess.run([str(venv / "bin/python"), "-c", "import sys\n" + check, daemon,
                                 str(venv)], env=env, cwd=tmp, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "0000:00:02.0"
