#include "server/topology/demo_topology.h"

namespace iommud {

absl::string_view DemoTopologyText() {
  // Starts on the literal's first line so that line numbers in errors match the .textpb file.
  static constexpr char kText[] =
      R"textpb(# iommud demo topology (proto/iommu/v1/topology.proto, text format).
# The same content is compiled into the daemon (server/topology/demo_topology.cc): `iommud` with
# no --topology starts with it. Two SMMU-like units; eight PCI functions in six groups:
#   smmu0: a lone GPU; a multi-function SATA controller whose two functions share one RID (one group);
#          two devices behind a PCIe-to-PCI bridge, both aliased to the bridge's RID (one group).
#   smmu1: three NVMe drives, one of them with an identity (bypass) default domain.
# proto-file: proto/iommu/v1/topology.proto
# proto-message: iommu.v1.Topology

units {
  name: "smmu0"
  caps {
    pgsize_bitmap: 0x40201000  # 4K | 2M | 1G
    iova_bits: 48
    max_rids: 65536
  }
}
units {
  name: "smmu1"
  caps {
    pgsize_bitmap: 0x201000  # 4K | 2M
    iova_bits: 39
    max_rids: 65536
    reserved_regions { start: 0xfee00000 size: 0x100000 }  # MSI doorbells
  }
}

devices { unit: "smmu0" name: "0000:00:02.0" rid: 0x0010 }
devices { unit: "smmu0" name: "0000:05:00.0" rid: 0x0500 }
devices { unit: "smmu0" name: "0000:05:00.1" rid: 0x0500 }
devices { unit: "smmu0" name: "0000:08:01.0" rid: 0x0808 alias_rids: 0x0800 }
devices { unit: "smmu0" name: "0000:08:02.0" rid: 0x0810 alias_rids: 0x0800 }
devices { unit: "smmu1" name: "0000:81:00.0" rid: 0x8100 }
devices { unit: "smmu1" name: "0000:82:00.0" rid: 0x8200 default_domain_type: DOMAIN_TYPE_IDENTITY }
devices { unit: "smmu1" name: "0000:83:00.0" rid: 0x8300 }
)textpb";
  return kText;
}

}  // namespace iommud
