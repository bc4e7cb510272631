#include "server/api/rpc_table.h"

namespace iommud {

Role RequiredRole(absl::string_view method) {
  Role role = Role::kAdmin;
  std::apply(
      [&](const auto&... rpc) { ((method == rpc.name ? void(role = rpc.role) : void()), ...); },
      kUnaryRpcs);
  for (const StreamRpc& stream : {kKeepLeaseRpc, kWatchEventsRpc}) {
    if (method == stream.name) role = stream.role;
  }
  return role;
}

}  // namespace iommud
