#!/usr/bin/python3
"""Fail the 3rd RID programming while a VMM attaches a multi-device group: the attach must fail
as a whole, every device stays where it was, and a retry succeeds."""
import sys

from common import connect, report


def run(client, unit="smmu0", base=0x3000):
    for i, alias in enumerate((base + 1, base + 2, base + 3)):
        client.call("ProbeDevice", unit=unit, device=f"mf-{base:x}-{i}", rid=base, alias_rids=[alias])
    group = client.device(f"mf-{base:x}-0").group_id
    client.call("ClaimOwnership", group_id=group, owner="vmm")
    domain = client.call("AllocDomain", unit=unit, owner="vmm").id
    client.inject("backend.attach", nth=3)
    try:
        client.call("AttachGroup", group_id=group, domain_id=domain, owner="vmm")
        print("attach: unexpectedly succeeded")
        ok = False
    except Exception as error:  # noqa: BLE001 - the IommudError is the point
        print(f"attach with the 3rd RID failing: {error.code().name} {error.reason}")
        ok = error.reason == "INJECTED_FAULT"
    still = client.call("GetGroup", group_id=group)
    print(f"group {group} after the failure: domain {still.domain_id} "
          f"(blocking {still.blocking_domain_id})")
    ok &= still.domain_id == still.blocking_domain_id
    ok &= report(client)
    client.call("ClearFaults")
    attached = client.call("AttachGroup", group_id=group, domain_id=domain, owner="vmm")
    print(f"retry without injection: group {group} on domain {attached.domain_id}")
    ok &= attached.domain_id == domain
    client.call("ReleaseOwnership", group_id=group, owner="vmm")
    client.call("FreeDomain", domain_id=domain, owner="vmm")
    for i in range(3):
        client.call("ReleaseDevice", device=f"mf-{base:x}-{i}")
    return ok & report(client)


if __name__ == "__main__":
    sys.exit(0 if run(connect(__doc__)) else 1)
