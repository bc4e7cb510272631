// iommuctl subcommands: domains and attachment.
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

void AddDomainCommands(CommandTable& commands) {
  const CommandAdder add(commands);
  // Domains and attachment.
  add("alloc", "UNIT [--type UNMANAGED|IDENTITY|BLOCKED]", "allocate a domain owned by --owner",
      1, 1, {"type"}, [](Context& ctx, const Args& a) {
        iommu::v1::AllocDomainRequest request;
        request.set_unit(a.positional[0]);
        request.set_type(DomainType(a.Option("type", "UNMANAGED")));
        request.set_owner(ctx.options.owner);
        return PrintDomain(ctx, ctx.client.AllocDomain(request));
      });
  add("free", "DOMAIN", "free a domain (refused while attached)", 1, 1, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::FreeDomainRequest request;
        request.set_domain_id(Number(a.positional[0], "DOMAIN"));
        request.set_owner(ctx.options.owner);
        return PrintDomain(ctx, ctx.client.FreeDomain(request));
      });
  add("attach-device", "NAME DOMAIN",
      "attach a device (the first attaches its group; others of the group join the domain)", 2, 2,
      {},
      [](Context& ctx, const Args& a) {
        iommu::v1::AttachDeviceRequest request;
        request.set_device(a.positional[0]);
        request.set_domain_id(Number(a.positional[1], "DOMAIN"));
        request.set_owner(ctx.options.owner);
        return PrintGroup(ctx, ctx.client.AttachDevice(request));
      });
  add("detach-device", "NAME DOMAIN",
      "detach a device (the group's last attached device detaches the group)", 2, 2, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::DetachDeviceRequest request;
        request.set_device(a.positional[0]);
        request.set_domain_id(Number(a.positional[1], "DOMAIN"));
        request.set_owner(ctx.options.owner);
        return PrintGroup(ctx, ctx.client.DetachDevice(request));
      });
  add("attach", "GROUP DOMAIN", "attach a group to a domain", 2, 2, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::AttachGroupRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_domain_id(Number(a.positional[1], "DOMAIN"));
        request.set_owner(ctx.options.owner);
        return PrintGroup(ctx, ctx.client.AttachGroup(request));
      });
  add("detach", "GROUP DOMAIN", "detach a group (back to its blocking domain)", 2, 2, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::DetachGroupRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_domain_id(Number(a.positional[1], "DOMAIN"));
        request.set_owner(ctx.options.owner);
        return PrintGroup(ctx, ctx.client.DetachGroup(request));
      });
  add("replace", "GROUP FROM_DOMAIN TO_DOMAIN",
      "move an attached group straight to another domain (no blocking window)", 3, 3, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::ReplaceDomainRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_from_domain_id(Number(a.positional[1], "FROM_DOMAIN"));
        request.set_to_domain_id(Number(a.positional[2], "TO_DOMAIN"));
        request.set_owner(ctx.options.owner);
        return PrintGroup(ctx, ctx.client.ReplaceDomain(request));
      });
}

}  // namespace iommuctl
}  // namespace iommud
