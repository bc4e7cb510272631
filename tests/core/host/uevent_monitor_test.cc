// ParseUevent on the kernel's own message layout (no socket: the buffers are the kernel's format).
#include "core/host/uevent_monitor.h"

#include <string>

#include "gtest/gtest.h"

namespace iommud {
namespace host {
namespace {

std::string Message(std::initializer_list<std::string> fields) {
  std::string out;
  for (const std::string& field : fields) {
    out += field;
    out.push_back('\0');
  }
  return out;
}

TEST(ParseUeventTest, ReadsAKernelPciRemove) {
  const std::string message = Message(
      {"remove@/devices/pci0000:00/0000:00:03.0/0000:01:01.0", "ACTION=remove",
       "DEVPATH=/devices/pci0000:00/0000:00:03.0/0000:01:01.0", "SUBSYSTEM=pci",
       "PCI_CLASS=FF0000", "PCI_SLOT_NAME=0000:01:01.0", "SEQNUM=1234"});
  std::optional<Uevent> event = ParseUevent(message.data(), message.size());
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->action, "remove");
  EXPECT_EQ(event->subsystem, "pci");
  EXPECT_EQ(event->devpath, "/devices/pci0000:00/0000:00:03.0/0000:01:01.0");
  EXPECT_EQ(event->PciDevice(), "0000:01:01.0");
  EXPECT_EQ(event->vars.at("SEQNUM"), "1234");
}

TEST(ParseUeventTest, PciDeviceFallsBackToTheDevpathAndIsEmptyForOtherSubsystems) {
  const std::string pci = Message({"add@/devices/pci0000:00/0000:00:02.0", "ACTION=add",
                                   "DEVPATH=/devices/pci0000:00/0000:00:02.0", "SUBSYSTEM=pci"});
  EXPECT_EQ(ParseUevent(pci.data(), pci.size())->PciDevice(), "0000:00:02.0");
  const std::string vfio = Message({"add@/devices/virtual/vfio/7", "ACTION=add",
                                    "DEVPATH=/devices/virtual/vfio/7", "SUBSYSTEM=vfio"});
  EXPECT_EQ(ParseUevent(vfio.data(), vfio.size())->PciDevice(), "");
}

TEST(ParseUeventTest, RefusesUdevMessagesAndMalformedOnes) {
  const std::string udev = Message({"libudev", "ACTION=add", "DEVPATH=/devices/x"});
  EXPECT_FALSE(ParseUevent(udev.data(), udev.size()).has_value());
  const std::string no_at = Message({"remove /devices/x", "ACTION=remove", "DEVPATH=/devices/x"});
  EXPECT_FALSE(ParseUevent(no_at.data(), no_at.size()).has_value());
  const std::string no_action = Message({"remove@/devices/x", "DEVPATH=/devices/x"});
  EXPECT_FALSE(ParseUevent(no_action.data(), no_action.size()).has_value());
  const std::string disagrees =
      Message({"remove@/devices/x", "ACTION=add", "DEVPATH=/devices/x"});
  EXPECT_FALSE(ParseUevent(disagrees.data(), disagrees.size()).has_value());
  EXPECT_FALSE(ParseUevent("", 0).has_value());
}

}  // namespace
}  // namespace host
}  // namespace iommud
