#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

Run it after changing a target's input format: python3 tests/fuzz/make_seeds.py
Each seed is a small, meaningful scenario; libFuzzer mutates from there.
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))


# --- Protobuf wire encoding (enough for the request messages) ---
def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, value):
    """A varint field for ints, a length-delimited one for str/bytes."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def message(*fields):
    return b"".join(field(n, v) for n, v in fields)


# The selectors of request_handlers_fuzzer.cc (Call()).
RPC = {name: i for i, name in enumerate([
    "ListUnits", "ListGroups", "GetGroup", "ListDevices", "GetDevice", "ListDomains",
    "GetDomain", "ProbeDevice", "ReleaseDevice", "UseDefaultDomain", "UnuseDefaultDomain",
    "ClaimOwnership", "ReleaseOwnership", "ClaimDevice", "ReleaseDeviceOwnership",
    "AllocDomain", "FreeDomain", "AttachDevice", "AttachGroup", "DetachGroup", "Map", "Unmap",
    "ListMappings", "Translate", "ListTranslationFaults", "InjectFault", "WatchEvents",
    "ListContendedGroups", "Audit", "Reconcile", "RenewLease", "Advance", "RegisterMemory",
    "UnregisterMemory", "ListMemoryRegions", "HandOverGroup", "MapBatch", "ReplaceDomain",
    "GetIovaRanges", "DetachDevice"])}


def calls(*items):
    """(rpc, (field, value)...) or (rpc, raw bytes) per call."""
    out = b""
    for name, *fields in items:
        body = fields[0] if fields and isinstance(fields[0], bytes) else message(*fields)
        assert len(body) < 256
        out += bytes([RPC[name], len(body)]) + body
    return out


# The fixture: units u0 (release domain 1) and u1 (2); groups 1 (d0; domains 3/4),
# 2 (d1+d2; 5/6), 3 (d3 with alias 4; 7/8), 4 (e0 on u1; 9/10); the next domain id is 11.
REQUEST_SEEDS = {
    "walkthrough": calls(
        ("ClaimOwnership", (1, 1), (2, "vmm")),
        ("AllocDomain", (1, "u0"), (3, "vmm")),
        ("AttachGroup", (1, 1), (2, 11), (3, "vmm")),
        ("Map", (1, 11), (2, 0x1000), (3, 0x80000000), (4, 0x2000), (6, "vmm")),
        ("Translate", (1, "d0"), (2, 0x1040)),
        ("ListMappings", (1, 11), (2, 1)),
        ("Unmap", (1, 11), (2, 0x1000), (3, 0x2000), (4, "vmm")),
        ("DetachGroup", (1, 1), (2, 11), (3, "vmm")),
        ("FreeDomain", (1, 11), (2, "vmm")),
        ("ReleaseOwnership", (1, 1), (2, "vmm"))),
    "hotplug": calls(
        ("ProbeDevice", (1, "u0"), (2, "n0"), (3, 9), (4, 10), (5, 5)),
        ("ClaimDevice", (1, "n0"), (2, "vmm")),
        ("AllocDomain", (1, "u0"), (2, 3), (3, "vmm")),
        ("AttachDevice", (1, "n0"), (2, 13), (3, "vmm")),
        ("ReleaseDevice", (1, "n0")),
        ("ProbeDevice", (1, "u0"), (2, "n1"), (3, 4)),
        ("ReleaseDeviceOwnership", (1, "n1"), (2, "vmm"))),
    "inventory": calls(
        ("ListUnits", (1, 1)),
        ("ListGroups", (1, 1), (3, "u0")),
        ("ListGroups", (1, 1), (2, "bogus-token")),
        ("ListDevices", (4, 2)),
        ("ListDomains", (1, 2), (3, "u1")),
        ("GetGroup", (1, 2)),
        ("GetDevice", (1, "d3")),
        ("GetDomain", (1, 3)),
        ("ListTranslationFaults", (1, 5))),
    "lease": calls(
        ("ClaimOwnership", (1, 3), (2, "vmm"), (3, 1500)),
        ("RenewLease", (1, 3), (2, "vmm"), (3, 2000)),
        ("Advance", (1500).to_bytes(3, "big")),  # the bytes are milliseconds
        ("RenewLease", (1, 3), (2, "vmm")),
        ("Advance", (2500).to_bytes(3, "big")),
        ("RenewLease", (1, 3), (2, "vmm")),
        ("ClaimOwnership", (1, 3), (2, "vmm"))),
    "kernel_driver": calls(
        ("UseDefaultDomain", (1, "d1")),
        ("ClaimOwnership", (1, 2), (2, "vmm")),
        ("UnuseDefaultDomain", (1, "d1")),
        ("ClaimOwnership", (1, 2), (2, "vmm")),
        ("ReleaseOwnership", (1, 2), (2, "other"))),
    "large_pages": calls(
        ("ClaimOwnership", (1, 4), (2, "vmm")),
        ("AllocDomain", (1, "u1"), (3, "vmm")),
        ("AttachGroup", (1, 4), (2, 11), (3, "vmm")),
        ("Map", (1, 11), (2, 0), (3, 0x40000000), (4, 0x40000000), (5, 1), (6, "vmm")),
        ("Unmap", (1, 11), (2, 0x200000), (3, 0x200000), (4, "vmm")),
        ("Map", (1, 9), (2, 0x200000), (3, 0x200000), (4, 0x200000)),
        ("Translate", (1, "e0"), (2, 0x12345), (3, 2))),
    "regions": calls(
        ("ClaimOwnership", (1, 1), (2, "vmm")),
        ("AllocDomain", (1, "u0"), (3, "vmm")),
        ("AttachGroup", (1, 1), (2, 11), (3, "vmm")),
        ("RegisterMemory", (1, 0x400000), (2, "vmm")),
        ("Map", (1, 11), (2, 0x200000), (4, 0x200000), (6, "vmm"), (7, 1), (8, 0x200000)),
        ("Map", (1, 11), (2, 0x600000), (3, 0x1000), (4, 0x1000), (6, "vmm"), (7, 1)),
        ("ListMemoryRegions", (1, 1)),
        ("UnregisterMemory", (1, 1), (2, "vmm")),
        ("MapBatch", (1, 11), (2, "vmm"),
         (3, message((1, 0x700000), (2, 0x1000), (4, 1))),
         (3, message((1, 0x701000), (2, 0x1000), (4, 1), (5, 0x1000))),
         (3, message((1, 0x702000), (2, 0x1000), (6, 0x80000000)))),
        ("Unmap", (1, 11), (2, 0x200000), (3, 0x200000), (4, "vmm")),
        ("UnregisterMemory", (1, 1), (2, "vmm"))),
    "replace_unmap_all": calls(
        ("ClaimOwnership", (1, 2), (2, "vmm")),
        ("AllocDomain", (1, "u0"), (3, "vmm")),
        ("AllocDomain", (1, "u0"), (3, "vmm")),
        ("AttachGroup", (1, 2), (2, 11), (3, "vmm")),
        ("Map", (1, 11), (2, 0x1000), (3, 0x80000000), (4, 0x2000), (6, "vmm")),
        ("Map", (1, 12), (2, 0x4000), (3, 0x80000000), (4, 0x1000), (6, "vmm")),
        ("ReplaceDomain", (1, 2), (2, 11), (3, 12), (4, "vmm")),
        ("Translate", (1, "d1"), (2, 0x4000)),
        ("GetIovaRanges", (1, 12)),
        ("ReplaceDomain", (1, 2), (2, 12), (3, 11), (4, "vmm")),
        ("Unmap", (1, 11), (3, 0xFFFFFFFFFFFFFFFF), (4, "vmm")),
        ("GetIovaRanges", (1, 3)),
        ("DetachGroup", (1, 2), (2, 11), (3, "vmm"))),
    # Group 2 holds d1 and d2: per-device attach (d1 attaches the group, d2 joins, a second domain
    # is refused), then per-device detach (d1 leaves, d2 the last detaches the group).
    "per_device_attach": calls(
        ("ClaimOwnership", (1, 2), (2, "vmm")),
        ("AllocDomain", (1, "u0"), (3, "vmm")),
        ("AllocDomain", (1, "u0"), (3, "vmm")),
        ("AttachDevice", (1, "d1"), (2, 11), (3, "vmm")),
        ("AttachDevice", (1, "d2"), (2, 12), (3, "vmm")),
        ("AttachDevice", (1, "d2"), (2, 11), (3, "vmm")),
        ("GetGroup", (1, 2)),
        ("DetachDevice", (1, "d1"), (2, 11), (3, "vmm")),
        ("DetachDevice", (1, "d1"), (2, 11), (3, "vmm")),
        ("Translate", (1, "d1"), (2, 0x1000)),
        ("DetachDevice", (1, "d2"), (2, 11), (3, "vmm")),
        ("FreeDomain", (1, 11), (2, "vmm"))),
    "service_rpcs": calls(
        ("InjectFault", (1, message((1, "backend.attach"), (2, 1), (3, 3), (7, "UNAVAILABLE")))),
        ("InjectFault", (1, message((1, "*"), (2, 3), (5, 7), (8, 10)))),
        ("WatchEvents", (1, 16), (2, 1), (4, 8)),
        ("WatchEvents", (3, "d0"), (5, 1)),
        ("ListContendedGroups", (1, 2)),
        ("Audit",),
        ("Reconcile",)),
}


# --- FuzzedDataProvider encoding (registry_ops_fuzzer, emulated_queue_fuzzer) ---
class Provider:
    """Builds the bytes FuzzedDataProvider turns into the given values.

    ConsumeIntegralInRange takes its bytes from the end of the data, most significant first, as many
    as the range needs, and returns min + value % (range + 1).
    """

    def __init__(self):
        self.taken = []  # bytes in the order they are consumed

    def int(self, value, lo, hi):
        span = hi - lo
        offset = value - lo
        assert 0 <= offset <= span
        nbytes = 0
        while nbytes < 8 and (span >> (8 * nbytes)) > 0:
            nbytes += 1
        for i in reversed(range(nbytes)):
            self.taken.append((offset >> (8 * i)) & 0xFF)
        return self

    def bool(self, value):
        return self.int(1 if value else 0, 0, 255)

    def data(self):
        return bytes(reversed(self.taken))


UNITS = ["u0", "u1", "nope"]
DEVICES = ["d0", "d1", "d2", "d3", "d4", "d5"]
OWNERS = ["a", "b", ""]
ADDRESS_BASES = [0, 0x200000, 0x10000, 0xFEE00000, 0xFF000000, 0xFFF000]
SIZES = [0, 0x1000, 0x2000, 0x200000, 0x201000, 1 << 24]


class Ops:
    """The operations of registry_ops_fuzzer.cc (OpRunner::RunOne), encoded."""

    def __init__(self, emulated):
        self.p = Provider().bool(emulated)

    def _op(self, index):
        self.p.int(index, 0, 21)

    def _pick(self, values, value):
        self.p.int(values.index(value), 0, len(values) - 1)

    def _address(self, base, pages=0):
        self.p.int(1, 0, 15)
        self._pick(ADDRESS_BASES, base)
        self.p.int(pages, 0, 7)

    def _size(self, size):
        self.p.int(1, 0, 15)
        self._pick(SIZES, size)

    def probe(self, unit, device, rid, aliases=(), default_type=None):
        self._op(0)
        self._pick(UNITS, unit)
        self._pick(DEVICES, device)
        self.p.int(rid, 0, 20)
        self.p.int(len(aliases), 0, 2)
        for alias in aliases:
            self.p.int(alias, 0, 20)
        self.p.bool(default_type is not None)
        if default_type is not None:
            self.p.int(default_type, 0, 4)
        return self

    def device_op(self, index, device, owner=None):  # 1 release, 2/3 (un)use default, 6/7 claims
        self._op(index)
        self._pick(DEVICES, device)
        if owner is not None:
            self._pick(OWNERS, owner)
        return self

    def group_op(self, index, group, owner, lease_millis=None):  # 4 claim, 5 release ownership
        self._op(index)
        self.p.int(group, 0, 24)
        self._pick(OWNERS, owner)
        if index == 4:  # LeaseTtl(): none, or milliseconds
            self.p.int(0 if lease_millis is None else 1, 0, 3)
            if lease_millis is not None:
                self.p.int(lease_millis, 0, 4000)
        return self

    def renew(self, group, owner, lease_millis=None):
        self._op(18)
        self.p.int(group, 0, 24)
        self._pick(OWNERS, owner)
        self.p.bool(lease_millis is not None)
        if lease_millis is not None:
            self.p.int(1, 0, 3)
            self.p.int(lease_millis, 0, 4000)
        return self

    def advance(self, millis):
        self._op(19)
        self.p.int(millis, 0, 3000)
        return self

    def alloc(self, unit, owner, domain_type=2):
        self._op(8)
        self._pick(UNITS, unit)
        self._pick(OWNERS, owner)
        self.p.int(domain_type, 0, 4)
        return self

    def free(self, domain, owner):
        self._op(9)
        self.p.int(domain, 0, 24)
        self._pick(OWNERS, owner)
        return self

    def attach_group(self, group, domain, owner, detach=False):
        self._op(12 if detach else 11)
        self.p.int(group, 0, 24)
        self.p.int(domain, 0, 24)
        self._pick(OWNERS, owner)
        return self

    def map(self, domain, iova_base, paddr_base, size, prot, owner, pages=0):
        self._op(13)
        self.p.int(domain, 0, 24)
        self._address(iova_base, pages)
        self._address(paddr_base, pages)
        self._size(size)
        self.p.int(prot, 0, 4)
        self._pick(OWNERS, owner)
        return self

    def unmap(self, domain, iova_base, size, owner):
        self._op(14)
        self.p.int(domain, 0, 24)
        self._address(iova_base)
        self._size(size)
        self._pick(OWNERS, owner)
        return self

    def translate(self, device, iova_base, offset, access):
        self._op(15)
        self._pick(DEVICES, device)
        self._address(iova_base)
        self.p.int(offset, 0, 0xFFF)
        self.p.int(access, 0, 3)
        return self

    def reconcile(self):
        self._op(16)
        return self

    def replace(self, group, from_domain, to_domain, owner):
        self._op(20)
        self.p.int(group, 0, 24)
        self.p.int(from_domain, 0, 24)
        self.p.int(to_domain, 0, 24)
        self._pick(OWNERS, owner)
        return self

    def unmap_all(self, domain, owner):
        self._op(21)
        self.p.int(domain, 0, 24)
        self._pick(OWNERS, owner)
        return self


def ops_scenario(emulated):
    # Units u0 (release domain 1), u1 (2); d0 -> group 1 (domains 3, 4); d1 joins d0's group by
    # alias; d2 -> group 2 (5, 6); user domains from 7.
    return (Ops(emulated)
            .probe("u0", "d0", 1)
            .probe("u0", "d1", 2, aliases=(1,))
            .probe("u0", "d2", 3, default_type=1)
            .group_op(4, 1, "a")
            .alloc("u0", "a")
            .attach_group(1, 7, "a")
            .map(7, 0x200000, 0x200000, 0x200000, 3, "a")
            .map(7, 0, 0x10000, 0x2000, 1, "a", pages=1)
            .translate("d0", 0x200000, 0x10, 1)
            .translate("d1", 0, 0x20, 2)
            .unmap(7, 0x200000, 0x200000, "a")
            .alloc("u0", "a")
            .map(8, 0x10000, 0x10000, 0x2000, 3, "a")
            .replace(1, 7, 8, "a")
            .translate("d1", 0x10000, 0x10, 1)
            .replace(1, 8, 7, "a")
            .unmap_all(8, "a")
            .unmap_all(7, "a")
            .device_op(6, "d2", "b")
            .attach_group(1, 7, "a", detach=True)
            .reconcile()
            .device_op(1, "d1")
            .free(8, "a")
            .free(7, "a")
            .group_op(5, 1, "a")
            .p.data())


def ops_lease(emulated):
    return (Ops(emulated)
            .probe("u0", "d0", 1)
            .group_op(4, 1, "a", lease_millis=1500)
            .alloc("u0", "a")
            .attach_group(1, 5, "a")
            .renew(1, "a", lease_millis=2000)
            .advance(1500)
            .renew(1, "a")
            .advance(2500)
            .renew(1, "a")
            .group_op(4, 1, "b")
            .p.data())


def ops_kernel_driver(emulated):
    return (Ops(emulated)
            .probe("u1", "d3", 5)
            .probe("u1", "d4", 5)
            .device_op(2, "d3")
            .group_op(4, 1, "b")
            .device_op(3, "d3")
            .device_op(6, "d4", "b")
            .alloc("u1", "b")
            .map(5, 0x10000, 0, 0x1000, 3, "b")
            .device_op(1, "d4")
            .p.data())


def emulated_seed(writes, ops):
    """emulated_queue_fuzzer: `writes` = [(region, index, kind, value)], `ops` raw bytes."""
    p = Provider()
    p.int(len(writes), 0, 16)
    for region, index, kind, value in writes:
        p.int(region, 0, 6)
        counts = [12, 16, 24, 64, 64, 64 * 512, 64 * 8]  # kRegions: pages * words
        p.int(index, 0, counts[region] - 1)
        p.int(kind, 0, 4)
        if kind == 0:
            p.int(value, 0, 16)
        elif kind == 1:
            p.int(value, 0, 70)
            p.int(0, 0, 15)
        else:
            p.int(value, 0, 2**64 - 1)
    return p.data() + ops


# Seed image (emulated_queue_fuzzer.cc SeedImage): allocation-area pages 0-1 are the stream
# tables of u0 and u1, then page tables; one freed page heads the free list.
EMULATED_SEEDS = {
    "unchanged": emulated_seed([], b""),
    "queued_commands": emulated_seed([(0, 6, 0, 3), (3, 0, 0, 3), (3, 1, 0, 5)], bytes(range(40))),
    "event_entries": emulated_seed([(4, 0, 3, 0x09FF00FF), (0, 8, 0, 2)], bytes(range(60, 0, -1))),
    "free_list_head": emulated_seed([(0, 4, 1, 9)], bytes(range(200, 100, -3))),
    "page_link": emulated_seed([(6, 8 * 5, 1, 3)], bytes(range(90, 30, -1))),
    "descriptor": emulated_seed([(5, 512 * 2 + 1, 1, 4)], b"\x05" * 30),
}


def write(target, seeds):
    directory = os.path.join(HERE, "corpus", target)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as out:
            out.write(data)


def main():
    write("request_handlers_fuzzer", REQUEST_SEEDS)
    write("registry_ops_fuzzer", {
        "software_scenario": ops_scenario(False),
        "emulated_scenario": ops_scenario(True),
        "software_kernel_driver": ops_kernel_driver(False),
        "emulated_kernel_driver": ops_kernel_driver(True),
        "software_lease": ops_lease(False),
        "emulated_lease": ops_lease(True),
    })
    write("emulated_queue_fuzzer", EMULATED_SEEDS)


if __name__ == "__main__":
    main()
