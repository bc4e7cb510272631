#!/usr/bin/python3
"""A VMM claims a group, attaches and maps, then dies without releasing (its process is killed).
Claimed without a lease (see lease_owner_dies.py), the group stays owned: the state is consistent
(the auditor finds nothing) but held by a dead owner. The orchestrator's recovery: release the
ownership with the dead VMM's cookie, which detaches and returns the group to its default domain."""
import os
import subprocess
import sys

from common import connect, report

VMM = r"""
import os, sys
sys.path[:0] = os.environ["SCENARIO_PATH"].split(":")
from iommud import Client
c = Client(os.environ["IOMMUD_TARGET"])
g = c.device(os.environ["DEVICE"]).group_id
c.call("ClaimOwnership", group_id=g, owner="vmm-dying")
d = c.call("AllocDomain", unit="smmu0", owner="vmm-dying").id
c.call("AttachGroup", group_id=g, domain_id=d, owner="vmm-dying")
r = c.register_memory(size=0x400000, owner="vmm-dying").id
c.map_region(d, 0x100000, r, 0, 0x200000, owner="vmm-dying")
print(d, r, flush=True)
os.kill(os.getpid(), 9)
"""


def run(client, target, unit="smmu0", rid=0x3200):
    name = f"od-{rid:x}"
    client.call("ProbeDevice", unit=unit, device=name, rid=rid)
    env = dict(os.environ, IOMMUD_TARGET=target, DEVICE=name,
               SCENARIO_PATH=":".join(sys.path))
    vmm = subprocess.run([sys.executable, "-c", VMM], env=env, capture_output=True, text=True)
    domain, region = (int(word) for word in vmm.stdout.split()[:2])
    print(f"the VMM was killed (exit {vmm.returncode}) holding domain {domain}")
    group = client.call("GetGroup", group_id=client.device(name).group_id)
    print(f"group {group.id}: owner '{group.owner}', domain {group.domain_id}")
    # The daemon prefixes owners with the caller's identity (uid:<n>/...).
    ok = group.owner == f"uid:{os.getuid()}/vmm-dying" and group.domain_id == domain
    ok &= report(client)
    client.call("ReleaseOwnership", group_id=group.id, owner="vmm-dying")
    client.call("FreeDomain", domain_id=domain, owner="vmm-dying")
    # Freeing the domain unmapped the dead VMM's memory: its region can go too.
    freed = client.call("UnregisterMemory", region_id=region, owner="vmm-dying")
    print(f"region {region} unregistered ({freed.size} bytes, {freed.mapped_bytes} mapped)")
    ok &= freed.mapped_bytes == 0
    back = client.call("GetGroup", group_id=group.id)
    print(f"recovered: group {back.id} on its default domain {back.default_domain_id}: "
          f"{back.domain_id == back.default_domain_id}")
    ok &= back.domain_id == back.default_domain_id
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
