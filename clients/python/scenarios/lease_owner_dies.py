#!/usr/bin/python3
"""A VMM claims a group with a 2s lease, attaches and maps, then dies without renewing (its process
is killed). Nobody has to clean up: once the lease lapses the daemon releases the ownership like
ReleaseOwnership (the group goes back to its default domain) and says so with a LEASE_EXPIRED
event, which this script waits for. The dead VMM's domain stays allocated, unattached, until the
orchestrator frees it."""
import os
import subprocess
import sys

from common import report

VMM = r"""
import os, sys
sys.path[:0] = os.environ["SCENARIO_PATH"].split(":")
from iommud import Client
c = Client(os.environ["IOMMUD_TARGET"])
g = c.device(os.environ["DEVICE"]).group_id
c.call("ClaimOwnership", group_id=g, owner="vmm-leased", lease_ttl_millis=2000)
d = c.call("AllocDomain", unit="smmu0", owner="vmm-leased").id
c.call("AttachGroup", group_id=g, domain_id=d, owner="vmm-leased")
r = c.register_memory(size=0x400000, owner="vmm-leased").id
c.map_region(d, 0x100000, r, 0, 0x200000, owner="vmm-leased")
print(d, r, flush=True)
os.kill(os.getpid(), 9)
"""


def run(client, target, unit="smmu0", rid=0x3300):
    from iommu.v1 import iommu_pb2
    name = f"lo-{rid:x}"
    client.call("ProbeDevice", unit=unit, device=name, rid=rid)
    group_id = client.device(name).group_id
    # Watch the group's LEASE_EXPIRED before the VMM starts (the snapshot's end: the stream is live).
    events = client.stub.WatchEvents(
        iommu_pb2.WatchEventsRequest(kinds=[iommu_pb2.EVENT_KIND_LEASE_EXPIRED], group_id=group_id),
        timeout=60)
    for event in events:
        if event.kind == iommu_pb2.EVENT_KIND_SNAPSHOT_END:
            break
    env = dict(os.environ, IOMMUD_TARGET=target, DEVICE=name,
               SCENARIO_PATH=":".join(sys.path))
    vmm = subprocess.run([sys.executable, "-c", VMM], env=env, capture_output=True, text=True)
    domain, region = (int(word) for word in vmm.stdout.split()[:2])
    print(f"the VMM was killed (exit {vmm.returncode}) holding domain {domain} with a 2s lease")
    expired = next(e for e in events if e.kind == iommu_pb2.EVENT_KIND_LEASE_EXPIRED)
    events.cancel()
    print(f"LEASE_EXPIRED: group {expired.group_id}, owner '{expired.owner}', domain "
          f"{expired.domain_id}")
    ok = expired.group_id == group_id and expired.domain_id == domain
    ok &= expired.owner == f"uid:{os.getuid()}/vmm-leased"
    group = client.call("GetGroup", group_id=group_id)
    print(f"group {group.id}: owner '{group.owner}', on its default domain: "
          f"{group.domain_id == group.default_domain_id}")
    ok &= group.owner == "" and group.domain_id == group.default_domain_id
    ok &= report(client)
    left = client.call("GetDomain", domain_id=domain)
    print(f"domain {domain}: attached to {list(left.attached_group_ids)}, "
          f"{left.mapping_count} mapping(s); the orchestrator frees it")
    ok &= not left.attached_group_ids
    client.call("FreeDomain", domain_id=domain, owner="vmm-leased")
    # Freeing the domain unmapped the dead VMM's memory: its region can go too.
    freed = client.call("UnregisterMemory", region_id=region, owner="vmm-leased")
    print(f"region {region} unregistered ({freed.size} bytes, {freed.mapped_bytes} mapped)")
    ok &= freed.mapped_bytes == 0
    client.call("ReleaseDevice", device=name)
    return ok & report(client)


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default=os.environ.get("IOMMUD_TARGET",
                                                           "unix:/run/iommud/iommud.sock"))
    args = parser.parse_args()
    from iommud import Client
    sys.exit(0 if run(Client(args.target), args.target) else 1)
