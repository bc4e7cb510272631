#include "core/host/sysfs_inventory.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/sysfs_io.h"
#include "core/host/unique_fd.h"
#include "core/status_macros.h"

namespace iommud {
namespace host {
namespace {

constexpr uint8_t kPciCapabilityListStatusBit = 0x10;  // status register (0x06) bit 4
constexpr uint8_t kPciCapabilityPointer = 0x34;
constexpr uint8_t kPciCapabilityIdExpress = 0x10;
constexpr uint8_t kPcieTypePcieToPciBridge = 0x7;
constexpr uint8_t kPcieTypePciToPcieBridge = 0x8;
constexpr off_t kConventionalConfigSize = 256;

absl::Status ParseError(absl::string_view what, absl::string_view text) {
  return Error(absl::StatusCode::kDataLoss, reason::kSysfsParseFailed,
               absl::StrCat("cannot parse ", what, ": \"", text, "\""));
}

// "0x1234" (sysfs spells ids, classes and region bounds in hex with a 0x prefix).
absl::StatusOr<uint64_t> ParseHexAttribute(absl::string_view what, absl::string_view text) {
  absl::string_view digits = absl::StripAsciiWhitespace(text);
  if (absl::StartsWith(digits, "0x") || absl::StartsWith(digits, "0X")) digits.remove_prefix(2);
  uint64_t value = 0;
  if (digits.empty() || !absl::SimpleHexAtoi(digits, &value)) return ParseError(what, text);
  return value;
}

absl::StatusOr<uint64_t> ReadHex(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadSysfsAttribute(path));
  return ParseHexAttribute(path, text);
}

// Up to `size` bytes of a binary attribute (PCI config space): as root the whole header, otherwise
// the kernel returns only the first 64 bytes.
std::string ReadBinaryPrefix(const std::string& path, size_t size) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return {};
  std::string data(size, '\0');
  const ssize_t n = ::pread(fd.get(), data.data(), size, 0);
  data.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return data;
}

// The PCIe device/port type of the function whose config space is `config` (PCI Express
// capability, bits 7:4 of its capabilities register), or nullopt when it cannot be found.
std::optional<uint8_t> PcieType(const std::string& config) {
  auto byte = [&config](size_t offset) { return static_cast<uint8_t>(config[offset]); };
  if (config.size() < 256 || !(byte(0x06) & kPciCapabilityListStatusBit)) return std::nullopt;
  uint8_t pointer = byte(kPciCapabilityPointer) & ~3u;
  for (int hops = 0; pointer >= 0x40 && hops < 48; ++hops) {
    if (byte(pointer) == kPciCapabilityIdExpress) return (byte(pointer + 2) >> 4) & 0xf;
    pointer = byte(pointer + 1) & ~3u;
  }
  return std::nullopt;
}

bool IsPciExpress(const std::string& config_path) {
  struct stat st;
  return ::stat(config_path.c_str(), &st) == 0 && st.st_size > kConventionalConfigSize;
}

absl::StatusOr<int> ParseGroupId(absl::string_view text) {
  int id = -1;
  if (!absl::SimpleAtoi(text, &id) || id < 0) return ParseError("IOMMU group id", text);
  return id;
}

}  // namespace

SysfsInventory::SysfsInventory(std::string sysfs_root) : root_(std::move(sysfs_root)) {}

std::string SysfsInventory::PciDevicePath(absl::string_view name) const {
  return absl::StrCat(root_, "/bus/pci/devices/", name);
}

absl::StatusOr<std::vector<IommuUnit>> SysfsInventory::IommuUnits() const {
  const std::string dir = root_ + "/class/iommu";
  std::vector<IommuUnit> units;
  if (!SysfsPathExists(dir)) return units;
  ASSIGN_OR_RETURN(const std::vector<std::string> names, ListSysfsDirectory(dir));
  for (const std::string& name : names) {
    IommuUnit unit;
    unit.name = name;
    const std::string devices = absl::StrCat(dir, "/", name, "/devices");
    if (SysfsPathExists(devices)) {
      ASSIGN_OR_RETURN(unit.devices, ListSysfsDirectory(devices));
    }
    units.push_back(std::move(unit));
  }
  return units;
}

absl::StatusOr<std::vector<int>> SysfsInventory::GroupIds() const {
  const std::string dir = root_ + "/kernel/iommu_groups";
  std::vector<int> ids;
  if (!SysfsPathExists(dir)) return ids;
  ASSIGN_OR_RETURN(const std::vector<std::string> names, ListSysfsDirectory(dir));
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(const int id, ParseGroupId(name));
    ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

absl::StatusOr<IommuGroupInfo> SysfsInventory::Group(int group_id) const {
  const std::string dir = absl::StrCat(root_, "/kernel/iommu_groups/", group_id);
  if (group_id < 0 || !SysfsPathExists(dir)) {
    return Error(absl::StatusCode::kNotFound, reason::kGroupNotFound,
                 absl::StrCat("IOMMU group ", group_id, " does not exist"),
                 {{"group_id", absl::StrCat(group_id)}});
  }
  IommuGroupInfo group;
  group.id = group_id;
  ASSIGN_OR_RETURN(group.devices, ListSysfsDirectory(dir + "/devices"));
  if (SysfsPathExists(dir + "/type")) {
    ASSIGN_OR_RETURN(group.type, ReadSysfsAttribute(dir + "/type"));
  }
  ASSIGN_OR_RETURN(const std::string regions, ReadSysfsAttribute(dir + "/reserved_regions"));
  ASSIGN_OR_RETURN(group.reserved_regions, ParseReservedRegions(regions));
  return group;
}

absl::StatusOr<std::vector<ReservedRegion>> SysfsInventory::ParseReservedRegions(
    absl::string_view text) {
  std::vector<ReservedRegion> regions;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() != 3) return ParseError("reserved region", line);
    ReservedRegion region;
    ASSIGN_OR_RETURN(region.start, ParseHexAttribute("reserved region start", fields[0]));
    ASSIGN_OR_RETURN(region.end, ParseHexAttribute("reserved region end", fields[1]));
    if (region.end < region.start) return ParseError("reserved region", line);
    region.type = std::string(fields[2]);
    regions.push_back(std::move(region));
  }
  return regions;
}

absl::StatusOr<std::vector<PciDeviceInfo>> SysfsInventory::PciDevices() const {
  const std::string dir = root_ + "/bus/pci/devices";
  std::vector<PciDeviceInfo> devices;
  if (!SysfsPathExists(dir)) return devices;
  ASSIGN_OR_RETURN(const std::vector<std::string> names, ListSysfsDirectory(dir));
  for (const std::string& name : names) {
    absl::StatusOr<PciDeviceInfo> device = PciDevice(name);
    if (!device.ok()) {
      if (!SysfsPathExists(PciDevicePath(name))) continue;  // removed while we listed
      return device.status();
    }
    devices.push_back(*std::move(device));
  }
  std::sort(devices.begin(), devices.end(), [](const PciDeviceInfo& a, const PciDeviceInfo& b) {
    return std::make_tuple(a.address.domain, a.address.bus, a.address.device,
                           a.address.function) < std::make_tuple(b.address.domain, b.address.bus,
                                                                 b.address.device,
                                                                 b.address.function);
  });
  return devices;
}

absl::StatusOr<PciDeviceInfo> SysfsInventory::PciDevice(absl::string_view name) const {
  const std::optional<PciAddress> address = ParsePciAddress(name);
  const std::string path = PciDevicePath(name);
  if (!address.has_value() || !SysfsPathExists(path)) {
    return Error(absl::StatusCode::kNotFound, reason::kDeviceNotFound,
                 absl::StrCat("no PCI device ", name), {{"device", std::string(name)}});
  }
  PciDeviceInfo info;
  info.address = *address;
  info.name = std::string(name);
  ASSIGN_OR_RETURN(const uint64_t vendor, ReadHex(path + "/vendor"));
  ASSIGN_OR_RETURN(const uint64_t device, ReadHex(path + "/device"));
  ASSIGN_OR_RETURN(const uint64_t class_code, ReadHex(path + "/class"));
  info.vendor = static_cast<uint16_t>(vendor);
  info.device = static_cast<uint16_t>(device);
  info.class_code = static_cast<uint32_t>(class_code);
  ASSIGN_OR_RETURN(info.driver, ReadSysfsLinkName(path + "/driver"));
  if (SysfsPathExists(path + "/driver_override")) {
    ASSIGN_OR_RETURN(info.driver_override, ReadSysfsAttribute(path + "/driver_override"));
    if (info.driver_override == "(null)") info.driver_override.clear();
  }
  ASSIGN_OR_RETURN(const std::string group, ReadSysfsLinkName(path + "/iommu_group"));
  if (!group.empty()) {
    ASSIGN_OR_RETURN(const int id, ParseGroupId(group));
    info.iommu_group = id;
  }
  ASSIGN_OR_RETURN(info.iommu, ReadSysfsLinkName(path + "/iommu"));
  ASSIGN_OR_RETURN(info.dma_requester_id, DmaRequesterId(path, *address));
  return info;
}

absl::StatusOr<std::optional<uint16_t>> SysfsInventory::DmaRequesterId(
    const std::string& device_path, const PciAddress& address) const {
  char* resolved = ::realpath(device_path.c_str(), nullptr);
  if (resolved == nullptr) {
    return Error(absl::StatusCode::kNotFound, reason::kDeviceNotFound,
                 absl::StrCat("cannot resolve ", device_path), {{"device", address.ToString()}});
  }
  std::string path = resolved;
  ::free(resolved);

  uint16_t requester_id = address.RequesterId();
  PciAddress child = address;
  // Walk up the device's sysfs path: every parent that is a PCI function is a bridge above it.
  for (;;) {
    const size_t slash = path.find_last_of('/');
    if (slash == std::string::npos || slash == 0) break;
    path.resize(slash);
    const std::optional<PciAddress> bridge = ParsePciAddress(path.substr(path.find_last_of('/') + 1));
    if (!bridge.has_value()) break;  // reached the host bridge (pci0000:00)
    const std::string config = path + "/config";
    if (!IsPciExpress(config)) {
      // A conventional bridge issues its secondary side's transactions under its own id.
      requester_id = bridge->RequesterId();
    } else {
      const std::optional<uint8_t> type = PcieType(ReadBinaryPrefix(config, 256));
      if (!type.has_value()) return std::optional<uint16_t>();
      if (*type == kPcieTypePcieToPciBridge) {
        requester_id = static_cast<uint16_t>(child.bus << 8);  // (secondary bus, 00.0)
      } else if (*type == kPcieTypePciToPcieBridge) {
        requester_id = bridge->RequesterId();
      }  // a root or switch port passes ids through

    }
    child = *bridge;
  }
  return std::optional<uint16_t>(requester_id);
}

}  // namespace host
}  // namespace iommud
