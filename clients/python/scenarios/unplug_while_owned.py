#!/usr/bin/python3
"""Hot-unplug (forced) the only device of a group while a VMM owns it with a domain attached: the
release completes, a leaked attachment is recorded at once (release_while_owned), the hardware no longer
points at the VMM's domain, and the domain can then be freed."""
import sys

from common import connect, report


def run(client, unit="smmu0", rid=0x3100):
    name = f"hp-{rid:x}"
    client.call("ProbeDevice", unit=unit, device=name, rid=rid)
    group = client.device(name).group_id
    client.call("ClaimOwnership", group_id=group, owner="vmm")
    domain = client.call("AllocDomain", unit=unit, owner="vmm").id
    client.call("AttachGroup", group_id=group, domain_id=domain, owner="vmm")
    # Forced at once (an admin): without force the owner is asked and waited for.
    released = client.call("ReleaseDevice", device=name, force=True, wait_millis=0)
    print(f"release while owned: leaked_attachment={released.leaked_attachment}")
    faults_before = client.call("ListTranslationFaults").total
    ok = released.leaked_attachment
    info = client.call("GetDomain", domain_id=domain)
    print(f"domain {domain} attached groups after the unplug: {list(info.attached_group_ids)}")
    ok &= not info.attached_group_ids
    client.call("FreeDomain", domain_id=domain, owner="vmm")
    print(f"domain {domain} freed; translation faults so far: {faults_before}")
    return ok & report(client)  # recorded when it happened; the hardware is clean


if __name__ == "__main__":
    sys.exit(0 if run(connect(__doc__)) else 1)
