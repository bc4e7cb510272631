// iommuctl subcommands: DMA ownership, leases and hand-over.
#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "clients/iommuctl/command_table.h"
#include "clients/iommuctl/numbers.h"
#include "clients/iommuctl/table.h"

namespace iommud {
namespace iommuctl {

namespace {

// Renews `request`'s lease over one KeepLease stream every `every` (default: a third of the TTL)
// for `duration`, printing each renewal; with request.bind() the ownership is bound to the
// stream, so this process ending (^C, kill, --for) releases it.
absl::Status KeepLeaseFor(Context& ctx, const iommu::v1::KeepLeaseRequest& request,
                          const std::string& interval, const std::string& for_option) {
  absl::Duration every, duration = absl::InfiniteDuration();
  if (!for_option.empty()) absl::ParseDuration(for_option, &duration);
  if (!interval.empty()) {
    absl::ParseDuration(interval, &every);
  } else {
    iommu::v1::GetGroupRequest get;
    get.set_group_id(request.group_id());
    absl::StatusOr<iommu::v1::Group> group = ctx.client.GetGroup(get);
    if (!group.ok()) return group.status();
    const uint64_t ttl = request.lease_ttl_millis() != 0 ? request.lease_ttl_millis()
                                                         : group->lease_ttl_millis();
    every = std::max(absl::Milliseconds(static_cast<int64_t>(ttl)) / 3, absl::Milliseconds(100));
  }
  return ctx.client.KeepLease(
      request, every,
      [&](const iommu::v1::Group& group) {
        if (ctx.options.json) {
          ctx.out << Json(group) << "\n";
        } else {
          ctx.out << "renewed group " << group.id() << ": lease until " << LeaseText(group)
                  << (group.lease_bound() ? " (bound to this stream)" : "") << "\n";
        }
        ctx.out.flush();
        return true;
      },
      duration);
}

}  // namespace

void AddOwnershipCommands(CommandTable& commands) {
  const CommandAdder add(commands);
  // Ownership.
  auto device_group_call = [&](const std::string& name, const std::string& help,
                               absl::StatusOr<iommu::v1::Group> (IommuClient::*call)(
                                   const iommu::v1::UseDefaultDomainRequest&)) {
    add(name, "NAME", help, 1, 1, {}, [call](Context& ctx, const Args& a) {
      iommu::v1::UseDefaultDomainRequest request;
      request.set_device(a.positional[0]);
      return PrintGroup(ctx, (ctx.client.*call)(request));
    });
  };
  device_group_call("use-default", "a kernel driver binds the device (owner_cnt++)",
                    &IommuClient::UseDefaultDomain);
  add("unuse-default", "NAME", "the kernel driver unbinds (owner_cnt--)", 1, 1, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::UnuseDefaultDomainRequest request;
        request.set_device(a.positional[0]);
        return PrintGroup(ctx, ctx.client.UnuseDefaultDomain(request));
      });
  add("claim", "GROUP [--lease 30s] [--hold [--interval 10s] [--for 1m]]",
      "take DMA ownership of a group (--owner); with --lease it lapses unless renewed; with "
      "--hold (lease 30s unless --lease) it stays bound to this process: iommuctl keeps a "
      "KeepLease stream open and the daemon releases the ownership as soon as it ends (^C, kill, "
      "--for, a dropped connection)",
      1, 1, {"lease", "hold", "interval", "for"}, [](Context& ctx, const Args& a) -> absl::Status {
        const bool hold = !a.Option("hold").empty();
        iommu::v1::ClaimOwnershipRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_owner(ctx.options.owner);
        request.set_lease_ttl_millis(LeaseMillis(a.Option("lease", hold ? "30s" : "")));
        absl::Status claimed = PrintGroup(ctx, ctx.client.ClaimOwnership(request));
        if (!claimed.ok() || !hold) return claimed;
        iommu::v1::KeepLeaseRequest keep;
        keep.set_group_id(request.group_id());
        keep.set_owner(ctx.options.owner);
        keep.set_bind(true);
        return KeepLeaseFor(ctx, keep, a.Option("interval"), a.Option("for"));
      });
  add("renew", "GROUP [--lease 30s]",
      "renew the ownership lease of a group (--lease: a new TTL; default: the lease's own)", 1, 1,
      {"lease"}, [](Context& ctx, const Args& a) {
        iommu::v1::RenewLeaseRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_owner(ctx.options.owner);
        request.set_lease_ttl_millis(LeaseMillis(a.Option("lease")));
        return PrintGroup(ctx, ctx.client.RenewLease(request));
      });
  add("keep-lease", "GROUP [--interval 10s] [--for 1m] [--lease 30s] [--bind]",
      "keep a group's lease alive over one KeepLease stream: a renewal every --interval (default "
      "a third of the lease's TTL) until --for passes or ^C (the lease then lapses on its own; "
      "with --bind the ownership is bound to the stream and released as soon as it ends)",
      1, 1, {"interval", "for", "lease", "bind"}, [](Context& ctx, const Args& a) -> absl::Status {
        iommu::v1::KeepLeaseRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_owner(ctx.options.owner);
        request.set_lease_ttl_millis(LeaseMillis(a.Option("lease")));
        request.set_bind(!a.Option("bind").empty());
        return KeepLeaseFor(ctx, request, a.Option("interval"), a.Option("for"));
      });
  add("release-ownership", "GROUP [--force]",
      "give a group back to its default domain (a handed-over group: taken back from its VMM, "
      "refused while the VMM holds it open unless --force)",
      1, 1, {"force"}, [](Context& ctx, const Args& a) {
        iommu::v1::ReleaseOwnershipRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_owner(ctx.options.owner);
        request.set_force(!a.Option("force").empty());
        return PrintGroup(ctx, ctx.client.ReleaseOwnership(request));
      });
  add("hand-over", "GROUP UID [GID]",
      "hand a group to a VMM that opens VFIO itself (QEMU -device vfio-pci,host=...): its devices "
      "on vfio-pci, /dev/vfio/N owned by UID:GID (GID defaults to UID); release-ownership takes "
      "it back",
      2, 3, {}, [](Context& ctx, const Args& a) {
        iommu::v1::HandOverGroupRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_owner(ctx.options.owner);
        request.set_uid(static_cast<uint32_t>(Number(a.positional[1], "UID")));
        request.set_gid(static_cast<uint32_t>(
            Number(a.positional.size() > 2 ? a.positional[2] : a.positional[1], "GID")));
        return PrintGroup(ctx, ctx.client.HandOverGroup(request));
      });
  add("claim-device", "NAME", "claim one device (iommufd style; same owner counts up)", 1, 1, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::ClaimDeviceRequest request;
        request.set_device(a.positional[0]);
        request.set_owner(ctx.options.owner);
        return PrintGroup(ctx, ctx.client.ClaimDevice(request));
      });
  add("release-device-ownership", "NAME", "release a device claim", 1, 1, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::ReleaseDeviceOwnershipRequest request;
        request.set_device(a.positional[0]);
        request.set_owner(ctx.options.owner);
        return PrintGroup(ctx, ctx.client.ReleaseDeviceOwnership(request));
      });
}

}  // namespace iommuctl
}  // namespace iommud
