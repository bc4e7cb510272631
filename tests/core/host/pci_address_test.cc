#include "core/host/pci_address.h"

#include "gtest/gtest.h"

namespace iommud {
namespace host {
namespace {

TEST(PciAddressTest, ParsesAndPrintsTheSysfsSpelling) {
  const std::optional<PciAddress> address = ParsePciAddress("0000:01:1f.7");
  ASSERT_TRUE(address.has_value());
  EXPECT_EQ(address->domain, 0u);
  EXPECT_EQ(address->bus, 0x01);
  EXPECT_EQ(address->device, 0x1f);
  EXPECT_EQ(address->function, 7);
  EXPECT_EQ(address->ToString(), "0000:01:1f.7");
  EXPECT_EQ(address->RequesterId(), 0x01ff);
  EXPECT_EQ(ParsePciAddress("10000:ff:00.0"), std::nullopt);
  EXPECT_EQ(ParsePciAddress("abcd:ff:00.0")->domain, 0xabcdu);
}

TEST(PciAddressTest, RefusesWhatIsNotAnAddress) {
  for (const char* text : {"", "pci0000:00", "0000:00:20.0", "0000:00:02.8", "0000:00:02:0",
                           "0000:0g:02.0", "00:02.0", "0000:00:02.0 "}) {
    EXPECT_EQ(ParsePciAddress(text), std::nullopt) << text;
  }
}

TEST(PciAddressTest, RequesterIdText) {
  EXPECT_EQ(RequesterIdToString(0x0018), "00:03.0");
  EXPECT_EQ(RequesterIdToString(0x0200), "02:00.0");
}

}  // namespace
}  // namespace host
}  // namespace iommud
