#include "tests/core/host/fake_sysfs.h"

#include <errno.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/host/errno_error.h"
#include "core/host/sysfs_io.h"

namespace iommud {
namespace host {
namespace test {
namespace {

namespace fs = std::filesystem;

void WriteFile(const std::string& path, absl::string_view content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

std::string Basename(const std::string& path) { return fs::path(path).filename().string(); }

absl::Status Fail(int err, const std::string& path) {
  return ErrnoError(CodeForErrno(err), "SYSFS_WRITE_FAILED", absl::StrCat("write to ", path), err,
                    {{"path", path}});
}

}  // namespace

FakeSysfs::FakeSysfs() {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/fake_sysfs.XXXXXX");
  root_ = mkdtemp(pattern.data()) != nullptr ? pattern : "";
  fs::create_directories(root_ + "/bus/pci/devices");
  fs::create_directories(root_ + "/bus/pci/drivers");
  WriteFile(root_ + "/bus/pci/drivers_probe", "");
}

FakeSysfs::~FakeSysfs() {
  std::error_code ignored;
  if (!root_.empty()) fs::remove_all(root_, ignored);
}

void FakeSysfs::AddIommu(const std::string& name) {
  fs::create_directories(absl::StrCat(root_, "/class/iommu/", name, "/devices"));
}

void FakeSysfs::AddGroup(int id, const std::string& type, const std::string& reserved_regions) {
  const std::string dir = absl::StrCat(root_, "/kernel/iommu_groups/", id);
  fs::create_directories(dir + "/devices");
  WriteFile(dir + "/type", type + "\n");
  WriteFile(dir + "/reserved_regions", reserved_regions);
}

void FakeSysfs::AddDriver(const std::string& name) {
  const std::string dir = absl::StrCat(root_, "/bus/pci/drivers/", name);
  WriteFile(dir + "/bind", "");
  WriteFile(dir + "/unbind", "");
}

void FakeSysfs::AddPciDevice(const FakePciDevice& device) {
  const std::string dir = absl::StrCat(root_, "/devices/", device.path);
  const std::string bdf = Basename(dir);
  fs::create_directories(dir);
  WriteFile(dir + "/vendor", device.vendor + "\n");
  WriteFile(dir + "/device", device.device + "\n");
  WriteFile(dir + "/class", device.pci_class + "\n");
  WriteFile(dir + "/config", device.config.empty() ? ConventionalConfig() : device.config);
  WriteFile(dir + "/driver_override", device.driver_override + "\n");
  fs::create_symlink(dir, DevicePath(bdf));
  if (device.group.has_value()) {
    const std::string group = absl::StrCat(root_, "/kernel/iommu_groups/", *device.group);
    fs::create_symlink(group, dir + "/iommu_group");
    fs::create_symlink(dir, absl::StrCat(group, "/devices/", bdf));
  }
  if (!device.iommu.empty()) {
    const std::string iommu = absl::StrCat(root_, "/class/iommu/", device.iommu);
    fs::create_symlink(iommu, dir + "/iommu");
    fs::create_symlink(dir, absl::StrCat(iommu, "/devices/", bdf));
  }
  if (!device.driver.empty()) Bind(bdf, device.driver);
}

std::string FakeSysfs::ConventionalConfig() { return std::string(256, '\0'); }

std::string FakeSysfs::PcieConfig(int pcie_type, bool with_capability) {
  std::string config(4096, '\0');
  if (with_capability) {
    config[0x06] = 0x10;  // capability list present
    config[0x34] = 0x40;  // first capability
    config[0x40] = 0x10;  // PCI Express
    config[0x41] = 0x00;  // last one
    config[0x42] = static_cast<char>(pcie_type << 4 | 2);
  }
  return config;
}

std::string FakeSysfs::DevicePath(const std::string& bdf) const {
  return absl::StrCat(root_, "/bus/pci/devices/", bdf);
}

void FakeSysfs::Bind(const std::string& bdf, const std::string& driver) {
  fs::create_symlink(absl::StrCat(root_, "/bus/pci/drivers/", driver),
                     DevicePath(bdf) + "/driver");
}

std::string FakeSysfs::DriverOf(const std::string& bdf) const {
  absl::StatusOr<std::string> driver = ReadSysfsLinkName(DevicePath(bdf) + "/driver");
  return driver.ok() ? *driver : "<error>";
}

std::string FakeSysfs::OverrideOf(const std::string& bdf) const {
  absl::StatusOr<std::string> value = ReadSysfsAttribute(DevicePath(bdf) + "/driver_override");
  return value.ok() ? *value : "<error>";
}

absl::Status FakeSysfs::Write(const std::string& path, absl::string_view value) {
  writes.push_back(absl::StrCat(path, "=", value));
  absl::string_view rest = path;
  if (!absl::ConsumePrefix(&rest, root_)) return Fail(ENOENT, path);
  const std::string name(absl::StripSuffix(value, "\n"));

  if (absl::ConsumePrefix(&rest, "/bus/pci/devices/") && absl::ConsumeSuffix(&rest, "/driver_override")) {
    WriteFile(path, name.empty() ? "(null)\n" : name + "\n");
    return absl::OkStatus();
  }
  if (rest == "/bus/pci/drivers_probe") {
    if (!SysfsPathExists(DevicePath(name))) return Fail(ENODEV, path);
    if (!DriverOf(name).empty()) return absl::OkStatus();
    const std::string override_driver = OverrideOf(name);
    if (override_driver == "(null)") return absl::OkStatus();  // no driver matches an edu-like id
    if (!SysfsPathExists(absl::StrCat(root_, "/bus/pci/drivers/", override_driver))) {
      return absl::OkStatus();
    }
    if (refusing_drivers.count(override_driver) == 0) Bind(name, override_driver);
    return absl::OkStatus();
  }
  if (absl::ConsumePrefix(&rest, "/bus/pci/drivers/")) {
    const size_t slash = rest.find('/');
    if (slash == absl::string_view::npos) return Fail(ENOENT, path);
    const std::string driver(rest.substr(0, slash));
    const absl::string_view op = rest.substr(slash + 1);
    if (!SysfsPathExists(DevicePath(name))) return Fail(ENODEV, path);
    if (op == "unbind") {
      if (DriverOf(name) != driver) return Fail(ENODEV, path);
      fs::remove(DevicePath(name) + "/driver");
      return absl::OkStatus();
    }
    if (op == "bind") {
      if (!DriverOf(name).empty()) return Fail(EBUSY, path);
      const std::string override_driver = OverrideOf(name);
      if (refusing_drivers.count(driver) != 0 ||
          (override_driver != "(null)" && override_driver != driver)) {
        return Fail(ENODEV, path);
      }
      Bind(name, driver);
      return absl::OkStatus();
    }
  }
  return Fail(EACCES, path);
}

}  // namespace test
}  // namespace host
}  // namespace iommud
