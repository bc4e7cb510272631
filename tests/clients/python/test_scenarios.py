"""The Python client's scenarios against the real iommud (started here with fault injection)."""
import os
import subprocess
import sys
import tempfile
import time

import pytest

SCENARIOS = os.path.join(os.path.dirname(__file__), "../../../clients/python/scenarios")
sys.path.insert(0, SCENARIOS)

import fail_third_attach  # noqa: E402
import lease_owner_dies  # noqa: E402
import owner_dies  # noqa: E402
import unplug_while_owned  # noqa: E402
from iommud import Client, IommudError  # noqa: E402


@pytest.fixture(scope="module")
def daemon():
    state = tempfile.mkdtemp(prefix="iommud-py-")
    log = open(os.path.join(state, "log"), "w+")
    process = subprocess.Popen(
        [os.environ["IOMMUD_BINARY"], f"--state_dir={state}", "--metrics_port=0",
         "--audit_interval=0", "--allow_fault_injection"], stderr=log)
    for _ in range(200):
        log.seek(0)
        if "serving on" in log.read():
            break
        time.sleep(0.05)
    target = f"unix:{state}/iommud.sock"
    yield target
    process.terminate()
    assert process.wait(timeout=30) == 0


@pytest.fixture
def client(daemon):
    c = Client(daemon)
    yield c
    c.call("ClearFaults")
    c.close()


def test_fail_third_attach(client):
    assert fail_third_attach.run(client)


def test_unplug_while_owned(client):
    assert unplug_while_owned.run(client)


def test_owner_dies(client, daemon):
    assert owner_dies.run(client, daemon)


def test_lease_owner_dies(client, daemon):
    assert lease_owner_dies.run(client, daemon)


def test_errors_carry_the_reason(client):
    with pytest.raises(IommudError) as error:
        client.call("GetDevice", device="0000:ff:00.0")
    assert error.value.code == "NOT_FOUND"
    assert error.value.reason == "DEVICE_NOT_FOUND"
    assert error.value.metadata == {"device": "0000:ff:00.0"}
    with pytest.raises(IommudError) as bad:
        client.inject("backend.nowhere")
    assert bad.value.reason == "INVALID_FAULT"


def test_injected_faults_are_listed_and_counted(client):
    fault = client.inject("backend.map", nth=2)
    listed = client.call("ListFaults")
    assert [f.fault_id for f in listed.faults] == [fault]
    assert "backend.attach" in listed.points
    assert client.call("ClearFaults").cleared == 1


def test_a_failed_state_write_changes_nothing(client):
    client.call("ProbeDevice", unit="smmu0", device="store-write", rid=0x5000)
    group = client.device("store-write").group_id
    before = client.call("GetGroup", group_id=group)
    client.inject("store.write")
    with pytest.raises(IommudError) as error:
        client.call("ClaimOwnership", group_id=group, owner="vmm")
    assert error.value.code == "UNAVAILABLE"
    assert error.value.reason == "STORE_WRITE_FAILED"
    assert "store.write" in client.call("ListFaults").points
    client.call("ClearFaults")
    assert client.call("GetGroup", group_id=group) == before
    client.call("ClaimOwnership", group_id=group, owner="vmm")
    client.call("ReleaseOwnership", group_id=group, owner="vmm")
    client.call("ReleaseDevice", device="store-write")


def test_memory_regions_are_mapped_by_region_and_offset(client):
    client.call("ProbeDevice", unit="smmu0", device="regions", rid=0x5100)
    group = client.device("regions").group_id
    client.call("ClaimOwnership", group_id=group, owner="vmm-r")
    domain = client.call("AllocDomain", unit="smmu0", owner="vmm-r").id
    client.call("AttachGroup", group_id=group, domain_id=domain, owner="vmm-r")
    region = client.register_memory(size=0x400000, owner="vmm-r")
    assert region.owner.endswith("/vmm-r") and region.size == 0x400000
    mapping = client.map_region(domain, 0x100000, region.id, 0x200000, 0x200000, owner="vmm-r")
    assert mapping.paddr == region.base + 0x200000
    dma = client.call("Translate", device="regions", iova=0x100040, access=1)
    assert dma.paddr == region.base + 0x200040
    listed = [r for r in client.call("ListMemoryRegions").regions if r.id == region.id]
    assert listed[0].mapped_bytes == 0x200000
    with pytest.raises(IommudError) as busy:
        client.call("UnregisterMemory", region_id=region.id, owner="vmm-r")
    assert busy.value.reason == "REGION_IN_USE"
    client.call("Unmap", domain_id=domain, iova=0x100000, size=0x200000, owner="vmm-r")
    assert client.call("UnregisterMemory", region_id=region.id, owner="vmm-r").id == region.id
    client.call("DetachGroup", group_id=group, domain_id=domain, owner="vmm-r")
    client.call("FreeDomain", domain_id=domain, owner="vmm-r")
    client.call("ReleaseOwnership", group_id=group, owner="vmm-r")
    client.call("ReleaseDevice", device="regions")


def test_hand_over_needs_a_host_backend(client):
    client.call("ProbeDevice", unit="smmu0", device="handover", rid=0x5200)
    group = client.device("handover").group_id
    before = client.call("GetGroup", group_id=group)
    with pytest.raises(IommudError) as refused:
        client.hand_over_group(group_id=group, owner="vmm-h", uid=os.getuid(), gid=os.getgid())
    assert refused.value.code == "FAILED_PRECONDITION"
    assert refused.value.reason == "HANDOVER_NEEDS_HOST_BACKEND"
    after = client.call("GetGroup", group_id=group)
    assert after == before and not after.handed_over
    client.call("ReleaseDevice", device="handover")


def test_replace_unmap_all_and_iova_ranges(client):
    for i, alias in enumerate((0x5301, 0x5302)):
        client.call("ProbeDevice", unit="smmu0", device=f"replace-{i}", rid=0x5300,
                    alias_rids=[alias])
    group = client.device("replace-0").group_id
    client.call("ClaimOwnership", group_id=group, owner="vmm-x")
    first = client.call("AllocDomain", unit="smmu0", owner="vmm-x").id
    second = client.call("AllocDomain", unit="smmu0", owner="vmm-x").id
    client.call("AttachGroup", group_id=group, domain_id=first, owner="vmm-x")
    region = client.register_memory(size=0x400000, owner="vmm-x")
    client.map_region(first, 0x100000, region.id, 0, 0x1000, owner="vmm-x")
    client.map_region(second, 0x200000, region.id, 0x1000, 0x1000, owner="vmm-x")
    client.map_region(second, 0x300000, region.id, 0x2000, 0x200000, owner="vmm-x")
    # A failure on the 2nd RID: every RID stays on the first domain.
    client.inject("backend.attach", nth=2)
    with pytest.raises(IommudError) as failed:
        client.replace(group, first, second, owner="vmm-x")
    assert failed.value.reason == "INJECTED_FAULT"
    assert client.call("GetGroup", group_id=group).domain_id == first
    assert client.call("Translate", device="replace-1", iova=0x100000, access=1).paddr == region.base
    client.call("ClearFaults")
    moved = client.replace(group, first, second, owner="vmm-x")
    assert moved.domain_id == second
    assert client.call("Translate", device="replace-1", iova=0x200000, access=1).paddr == \
        region.base + 0x1000
    with pytest.raises(IommudError) as stale:
        client.replace(group, first, second, owner="vmm-x")
    assert stale.value.reason == "DOMAIN_NOT_ATTACHED"
    ranges = client.iova_ranges(second)
    assert ranges[0] == (0, 0xfee00000) and ranges[1][0] == 0xfef00000
    assert client.unmap_all(second, owner="vmm-x") == 0x201000
    assert list(client.call("ListMappings", domain_id=second).mappings) == []
    fault = client.call("Translate", device="replace-0", iova=0x200000, access=1)
    assert fault.fault != 0
    assert client.unmap_all(first, owner="vmm-x") == 0x1000
    client.call("UnregisterMemory", region_id=region.id, owner="vmm-x")
    client.call("ReleaseOwnership", group_id=group, owner="vmm-x")
    client.call("FreeDomain", domain_id=first, owner="vmm-x")
    client.call("FreeDomain", domain_id=second, owner="vmm-x")
    for i in range(2):
        client.call("ReleaseDevice", device=f"replace-{i}")
