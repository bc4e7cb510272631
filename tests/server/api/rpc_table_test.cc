// The RPC table (server/api/rpc_table.h) against the proto's service descriptor: every method of
// iommu.v1.Iommu is declared exactly once, with its handler's request and response types and its
// streaming kind; every entry has a role; the mutating entries are exactly the requests that carry
// a request_id.
#include "server/api/rpc_table.h"

#include <google/protobuf/descriptor.h>

#include <map>
#include <string>
#include <tuple>

#include "gtest/gtest.h"
#include "iommu/v1/iommu.pb.h"

namespace iommud {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::MethodDescriptor;
using ::google::protobuf::ServiceDescriptor;

const ServiceDescriptor& IommuServiceDescriptor() {
  const ServiceDescriptor* service =
      iommu::v1::GetDeviceRequest::descriptor()->file()->FindServiceByName("Iommu");
  EXPECT_NE(service, nullptr);
  return *service;
}

// Checks one entry against the method of its name; counts it in `declared`.
void CheckEntry(absl::string_view name, Role role, bool client_streaming, bool server_streaming,
                const Descriptor* request, const Descriptor* response,
                std::map<std::string, int>* declared) {
  ++(*declared)[std::string(name)];
  const MethodDescriptor* method = IommuServiceDescriptor().FindMethodByName(std::string(name));
  ASSERT_NE(method, nullptr) << name << " is not a method of iommu.v1.Iommu";
  EXPECT_EQ(method->client_streaming(), client_streaming) << name;
  EXPECT_EQ(method->server_streaming(), server_streaming) << name;
  EXPECT_EQ(method->input_type(), request) << name << ": " << method->input_type()->full_name()
                                           << " vs " << request->full_name();
  EXPECT_EQ(method->output_type(), response) << name << ": " << method->output_type()->full_name()
                                             << " vs " << response->full_name();
  EXPECT_NE(role, Role::kNone) << name;
}

TEST(RpcTableTest, EveryMethodIsDeclaredOnceWithItsTypes) {
  std::map<std::string, int> declared;
  std::apply(
      [&](const auto&... rpc) {
        (CheckEntry(rpc.name, rpc.role, false, false,
                    std::decay_t<decltype(rpc)>::RequestType::descriptor(),
                    std::decay_t<decltype(rpc)>::ResponseType::descriptor(), &declared),
         ...);
      },
      kUnaryRpcs);
  CheckEntry(kKeepLeaseRpc.name, kKeepLeaseRpc.role, true, true,
             iommu::v1::KeepLeaseRequest::descriptor(), iommu::v1::Group::descriptor(), &declared);
  CheckEntry(kWatchEventsRpc.name, kWatchEventsRpc.role, false, true,
             iommu::v1::WatchEventsRequest::descriptor(), iommu::v1::Event::descriptor(),
             &declared);

  const ServiceDescriptor& service = IommuServiceDescriptor();
  for (int i = 0; i < service.method_count(); ++i) {
    EXPECT_EQ(declared[service.method(i)->name()], 1) << service.method(i)->name();
  }
  EXPECT_EQ(declared.size(), static_cast<size_t>(service.method_count()));
}

template <typename Rpc>
void CheckKind(const Rpc& rpc) {
  const bool has_request_id =
      Rpc::RequestType::descriptor()->FindFieldByName("request_id") != nullptr;
  EXPECT_EQ(has_request_id, Rpc::kind == RpcKind::kMutating) << rpc.name;
}

TEST(RpcTableTest, MutatingEntriesAreTheRequestsWithARequestId) {
  std::apply([](const auto&... rpc) { (CheckKind(rpc), ...); }, kUnaryRpcs);
}

TEST(RpcTableTest, StreamsHoldTheirSlots) {
  EXPECT_EQ(SlotOf(kKeepLeaseRpc), LimiterSlot::kCall);
  EXPECT_EQ(SlotOf(kWatchEventsRpc), LimiterSlot::kWatcher);
  EXPECT_EQ(SlotOf(std::get<0>(kUnaryRpcs)), LimiterSlot::kCall);
}

}  // namespace
}  // namespace iommud
