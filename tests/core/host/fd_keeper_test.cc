// The names kept fds go under (core/host/fd_keeper.h): valid FDNAMEs, and parsed back exactly.
#include "core/host/fd_keeper.h"

#include "gtest/gtest.h"

namespace iommud {
namespace host {
namespace {

bool ValidFdName(const std::string& name) {  // systemd's rule (server/host/fd_store.h)
  if (name.empty() || name.size() > 255) return false;
  for (char c : name) {
    if (c < 0x21 || c > 0x7e || c == ':') return false;
  }
  return true;
}

TEST(FdKeeperNamesTest, GroupAndContainerNames) {
  EXPECT_EQ(GroupFdName(7), "group-7");
  EXPECT_EQ(ContainerFdName("dmar0", 12), "container-dmar0-12");
  std::optional<ContainerName> parsed = ParseContainerFdName("container-dmar0-12");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->unit, "dmar0");
  EXPECT_EQ(parsed->domain, 12u);
  // A unit name with '-' or ':' survives the trip.
  parsed = ParseContainerFdName(ContainerFdName("odd-unit:1", 3));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->unit, "odd-unit:1");
  EXPECT_TRUE(ValidFdName(ContainerFdName("odd-unit:1", 3)));
  for (const char* other : {"group-7", "container-", "container-dmar0", "container-dmar0-x",
                            "container--3", "memory-1-0-0-a", "container-%zz-1"}) {
    EXPECT_FALSE(ParseContainerFdName(other).has_value()) << other;
  }
}

TEST(FdKeeperNamesTest, MemoryNamesCarryTheRegionAndAnyOwner) {
  MemoryFdInfo region{3, uint64_t{1} << 40, 0x200000, "uid:1000/vm-1 %x"};
  const std::string name = MemoryFdName(region);
  EXPECT_TRUE(ValidFdName(name)) << name;
  EXPECT_EQ(name.rfind("memory-3-10000000000-200000-", 0), 0u) << name;
  std::optional<MemoryFdInfo> parsed = ParseMemoryFdName(name);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->id, 3u);
  EXPECT_EQ(parsed->base, uint64_t{1} << 40);
  EXPECT_EQ(parsed->size, 0x200000u);
  EXPECT_EQ(parsed->owner, "uid:1000/vm-1 %x");
  for (const char* other : {"memory-", "memory-1-2-3", "memory-x-2-3-o", "memory-1-2-3-",
                            "group-1", "memory-1-2-3-o%4"}) {
    EXPECT_FALSE(ParseMemoryFdName(other).has_value()) << other;
  }
}

}  // namespace
}  // namespace host
}  // namespace iommud
