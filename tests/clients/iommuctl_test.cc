// iommuctl's commands against an in-process iommud (the real Daemon on a unix socket): the VMM
// walkthrough in tables and JSON, argument validation (exit 2 before anything is sent), and the
// error line format of refused calls (exit 1).
#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "clients/cpp/iommud_client.h"
#include "clients/iommuctl/commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/daemon.h"
#include "tests/testing/status_test_macros.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

class IommuctlTest : public ::testing::Test {
 protected:
  test::TempDir temp_;
  void SetUp() override {
    state_dir_ = temp_.path();
    DaemonOptions options;
    options.state_dir = state_dir_;
    options.audit_interval = absl::ZeroDuration();
    // Callers are the test's uid (SO_PEERCRED): admin under the default policy.
    absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(options);  // demo topology
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(*daemon);
    ClientOptions client_options;
    client_options.target = daemon_->unix_target();
    absl::StatusOr<std::unique_ptr<IommuClient>> client = IommuClient::Connect(client_options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    options_.owner = "vmm-1";
  }
  void TearDown() override {
    daemon_.reset();
  }

  struct Result {
    int exit_code;
    std::string out;
    std::string err;
  };
  Result Run(const std::string& command_line) {
    std::vector<std::string> command = absl::StrSplit(command_line, ' ', absl::SkipEmpty());
    std::ostringstream out, err;
    const int code = RunCommand(*client_, options_, command, out, err);
    return {code, out.str(), err.str()};
  }
  // Runs and expects success; returns stdout.
  std::string Ok(const std::string& command_line) {
    Result result = Run(command_line);
    EXPECT_EQ(result.exit_code, kExitOk) << command_line << "\n" << result.err;
    return result.out;
  }

  std::string state_dir_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<IommuClient> client_;
  CliOptions options_;
};

TEST_F(IommuctlTest, TheVmmWalkthrough) {
  EXPECT_THAT(Ok("units"), HasSubstr("smmu0  software  4K|2M|1G"));
  std::string probed = Ok("probe smmu0 0000:07:00.0 0x700");
  EXPECT_THAT(probed, HasSubstr("0000:07:00.0  smmu0  0x700"));
  const DeviceInfo device = daemon_->registry()->GetDevice("0000:07:00.0").value();
  const std::string group = absl::StrCat(device.group);
  EXPECT_THAT(Ok("claim " + group), HasSubstr("vmm-1"));
  Ok("alloc smmu0");
  DomainId domain = 0;
  for (const DomainInfo& info : daemon_->registry()->ListDomains()) {
    if (info.owner == absl::StrCat("uid:", getuid(), "/vmm-1")) domain = info.id;
  }
  ASSERT_NE(domain, 0u);
  const std::string d = absl::StrCat(domain);
  Ok(absl::StrCat("attach ", group, " ", d));
  // Guest memory: a region, mapped by (region, offset).
  EXPECT_THAT(Ok("register-memory 4M"),
              HasSubstr(absl::StrCat("uid:", getuid(), "/vmm-1  EMULATED  4M    0x10000000000")));
  EXPECT_EQ(Ok(absl::StrCat("map-region ", d, " 0x100000 1 2M 2M")),
            "mapped 0x100000 -> region 1 + 0x200000 (0x10000200000) size 2M rw\n");
  EXPECT_THAT(Ok("regions"), HasSubstr("EMULATED  4M    0x10000000000  2M"));
  EXPECT_THAT(Ok("mappings " + d), HasSubstr("0x100000  0x10000200000  2M    rw"));
  EXPECT_EQ(Ok("translate 0000:07:00.0 0x100040"),
            absl::StrCat("0x100040 -> 0x10000200040 (domain ", d, ")\n"));
  EXPECT_EQ(Run("unregister-memory 1").exit_code, 1);
  EXPECT_EQ(Ok(absl::StrCat("unmap ", d, " 0x100000 2M")), "unmapped 2M\n");
  EXPECT_THAT(Ok("unregister-memory 1"), HasSubstr("EMULATED"));
  // Raw physical addresses: this process is admin (the default policy).
  EXPECT_EQ(Ok(absl::StrCat("map ", d, " 0x100000 0x80000000 2M")),
            "mapped 0x100000 -> 0x80000000 size 2M rw\n");
  EXPECT_THAT(Ok("mappings " + d), HasSubstr("0x100000  0x80000000  2M    rw"));
  EXPECT_EQ(Ok("translate 0000:07:00.0 0x100040"),
            absl::StrCat("0x100040 -> 0x80000040 (domain ", d, ")\n"));
  EXPECT_EQ(Ok(absl::StrCat("unmap ", d, " 0x100000 2M")), "unmapped 2M\n");
  EXPECT_EQ(Ok("translate 0000:07:00.0 0x100040 --access rw"),
            absl::StrCat("fault NO_MAPPING at 0x100040 (domain ", d, ")\n"));
  // iova-ranges: the unit's aperture minus the MSI window.
  const std::string ranges = Ok("iova-ranges " + d);
  EXPECT_THAT(ranges, HasSubstr("0x0  "));
  EXPECT_THAT(ranges, HasSubstr("0xfedfffff"));
  EXPECT_THAT(ranges, HasSubstr("0xfef00000"));
  // replace: straight to a second domain; then unmap-all of it.
  Ok("alloc smmu0");
  DomainId second = 0;
  for (const DomainInfo& info : daemon_->registry()->ListDomains()) {
    if (info.owner == absl::StrCat("uid:", getuid(), "/vmm-1") && info.id != domain) {
      second = info.id;
    }
  }
  ASSERT_NE(second, 0u);
  const std::string d2 = absl::StrCat(second);
  Ok(absl::StrCat("map ", d2, " 0x1000 0x80000000 4K"));
  Ok(absl::StrCat("map ", d2, " 0x200000 0x80200000 2M"));
  Ok(absl::StrCat("replace ", group, " ", d, " ", d2));
  EXPECT_EQ(daemon_->registry()->GetGroup(device.group)->domain, second);
  EXPECT_EQ(Run(absl::StrCat("replace ", group, " ", d, " ", d2)).exit_code, 1);
  EXPECT_EQ(Run(absl::StrCat("replace ", group, " ", d, " two")).exit_code, 2);
  EXPECT_EQ(Ok("unmap-all " + d2), "unmapped 2052K\n");  // 4K + 2M
  EXPECT_THAT(daemon_->registry()->ListMappings(second).value(), ::testing::IsEmpty());
  EXPECT_EQ(Ok("unmap-all " + d2), "unmapped 0\n");
  Ok(absl::StrCat("detach ", group, " ", d2));
  Ok("free " + d2);
  Ok("free " + d);
  Ok("release-ownership " + group);
  EXPECT_EQ(Ok("release 0000:07:00.0"), "released 0000:07:00.0\n");
  EXPECT_THAT(Ok("faults"), HasSubstr("NO_MAPPING"));
  EXPECT_THAT(Ok("audit"), HasSubstr("0 leaked attachment(s)"));
}

TEST_F(IommuctlTest, JsonOutputIsTheResponseMessage) {
  options_.json = true;
  const std::string json = Ok("device 0000:00:02.0");
  EXPECT_THAT(json, HasSubstr("\"name\": \"0000:00:02.0\""));
  EXPECT_THAT(json, HasSubstr("\"binding\": \"DRIVER_BINDING_NONE\""));
  EXPECT_THAT(Ok("groups"), HasSubstr("\"groups\": ["));
  EXPECT_THAT(Ok("health"), HasSubstr("\"status\": \"SERVING\""));
}

// -o json is --json; -o wide adds columns to the group and domain tables; -o table is the default.
TEST_F(IommuctlTest, OutputFormats) {
  const std::string table = Ok("groups");
  options_.output = OutputFormat::kWide;
  const std::string wide = Ok("groups");
  EXPECT_THAT(table, Not(HasSubstr("CLAIMED")));
  EXPECT_THAT(wide, HasSubstr("LEASE  CLAIMED  ATTACHED  LEASE_EXPIRY"));
  // The same rows, each with three more cells ("-" for an unclaimed, unleased group).
  EXPECT_EQ(std::count(wide.begin(), wide.end(), '\n'), std::count(table.begin(), table.end(), '\n'));
  EXPECT_THAT(Ok("domains"), HasSubstr("MAPPED  PAGE_SIZES  IOVA_BITS"));
  EXPECT_THAT(Ok("domains"), HasSubstr("4K|2M|1G"));
  // Elsewhere wide is the table.
  options_.output = OutputFormat::kTable;
  const std::string units = Ok("units");
  options_.output = OutputFormat::kWide;
  EXPECT_EQ(Ok("units"), units);

  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"-o", "json", "groups"}, {"-ojson", "groups"},
        {"--output=json", "groups"}, {"groups", "--output", "json"}, {"groups", "-o", "json"},
        {"--json", "-o", "json", "groups"}}) {
    CliOptions options;
    std::vector<std::string> command;
    ASSERT_TRUE(ParseGlobalOptions(args, &options, &command).ok()) << absl::StrJoin(args, " ");
    EXPECT_EQ(options.output, OutputFormat::kJson) << absl::StrJoin(args, " ");
    EXPECT_TRUE(options.json) << absl::StrJoin(args, " ");
    EXPECT_EQ(command, std::vector<std::string>{"groups"}) << absl::StrJoin(args, " ");
  }
  CliOptions options;
  std::vector<std::string> command;
  ASSERT_OK(ParseGlobalOptions({"-o", "wide", "domains"}, &options, &command));
  EXPECT_EQ(options.output, OutputFormat::kWide);
  EXPECT_FALSE(options.json);
  EXPECT_ERROR(ParseGlobalOptions({"-o", "yaml", "groups"}, &options, &command), kInvalidArgument,
               "USAGE");
  EXPECT_ERROR(ParseGlobalOptions({"--json", "-o", "table", "groups"}, &options, &command),
               kInvalidArgument, "USAGE");
  EXPECT_ERROR(ParseGlobalOptions({"groups", "-o"}, &options, &command), kInvalidArgument,
               "USAGE");
  EXPECT_THAT(Usage(), HasSubstr("-o, --output json|table|wide"));
}

TEST_F(IommuctlTest, RefusedCallsPrintCodeReasonAndMetadata) {
  Result result = Run("device 0000:99:00.0");
  EXPECT_EQ(result.exit_code, kExitRpcError);
  EXPECT_EQ(result.out, "");
  EXPECT_EQ(result.err,
            "iommuctl: NOT_FOUND DEVICE_NOT_FOUND: no device '0000:99:00.0' "
            "(device=0000:99:00.0)\n");
  result = Run("free 3");  // a default domain
  EXPECT_EQ(result.exit_code, kExitRpcError);
  EXPECT_THAT(result.err, StartsWith("iommuctl: FAILED_PRECONDITION CORE_DOMAIN: "));
}

TEST_F(IommuctlTest, BadArgumentsAreUsageErrorsAndSendNothing) {
  const size_t devices = daemon_->registry()->ListDevices().size();
  for (const char* bad :
       {"probe smmu0 0000:07:00.0 0xZZ", "probe smmu0 0000:07:00.0", "probe smmu0 a 1 --alias x",
        "map 1 2 3", "map 1 0x1000 0x1000 4K --prot x", "alloc smmu0 --type SIDEWAYS",
        "group twelve", "frobnicate", "units --bogus 1", "watch --kind NOPE"}) {
    Result result = Run(bad);
    EXPECT_EQ(result.exit_code, kExitUsage) << bad;
    EXPECT_THAT(result.err, StartsWith("iommuctl: INVALID_ARGUMENT ")) << bad;
  }
  EXPECT_EQ(daemon_->registry()->ListDevices().size(), devices);
  EXPECT_THAT(Run("help").out, HasSubstr("release-device-ownership"));
  EXPECT_EQ(Run("hand-over 1").exit_code, kExitUsage);
  EXPECT_EQ(Run("hand-over 1 qemu").exit_code, kExitUsage);
}

// The software backend has no host to hand a group to: the refusal is the daemon's, and the group
// stays as it was.
TEST_F(IommuctlTest, HandOverNeedsAHostBackend) {
  const Result result = Run("hand-over 1 4242");
  EXPECT_EQ(result.exit_code, kExitRpcError);
  EXPECT_THAT(result.err,
              StartsWith("iommuctl: FAILED_PRECONDITION HANDOVER_NEEDS_HOST_BACKEND: "));
  EXPECT_THAT(Run("hand-over --help").out, HasSubstr("GROUP UID [GID]"));
  EXPECT_THAT(Run("release-ownership --help").out, HasSubstr("--force"));
  EXPECT_THAT(Ok("group 1"), Not(HasSubstr("handed over")));
  EXPECT_EQ(Run("release-ownership 1 --force").exit_code, kExitRpcError);  // not owned
}

TEST_F(IommuctlTest, EveryCommandHasItsOwnHelp) {
  const size_t devices = daemon_->registry()->ListDevices().size();
  for (const char* line : {"map --help", "map -h", "help map", "map 1 --help", "probe --help x"}) {
    Result result = Run(line);
    EXPECT_EQ(result.exit_code, kExitOk) << line << "\n" << result.err;
    EXPECT_THAT(result.out, HasSubstr("usage: iommuctl [GLOBAL OPTIONS] ")) << line;
    EXPECT_EQ(result.err, "") << line;
  }
  EXPECT_THAT(Run("map --help").out, HasSubstr("map DOMAIN IOVA PADDR SIZE [--prot rw|r|w]"));
  EXPECT_THAT(Run("map --help").out, HasSubstr("options: --prot\n"));
  EXPECT_THAT(Run("health --help").out, HasSubstr("4 when the daemon answers NOT_SERVING"));
  EXPECT_EQ(Run("probe --help smmu0 0000:07:00.0 0x700").exit_code, kExitOk);
  EXPECT_EQ(daemon_->registry()->ListDevices().size(), devices);  // help sends nothing
  Result unknown = Run("help frobnicate");
  EXPECT_EQ(unknown.exit_code, kExitUsage);
  EXPECT_THAT(unknown.err, StartsWith("iommuctl: INVALID_ARGUMENT USAGE: unknown command"));
  EXPECT_EQ(CommandHelp("frobnicate"), "");
  EXPECT_TRUE(IsHelpRequest({"help"}));
  EXPECT_TRUE(IsHelpRequest({"units", "--help"}));
  EXPECT_FALSE(IsHelpRequest({"units"}));
  EXPECT_FALSE(IsHelpRequest({}));
}

TEST_F(IommuctlTest, HealthExitsNonZeroWhenNotServing) {
  EXPECT_EQ(Run("health").exit_code, kExitOk);
  daemon_->StopServing();  // health NOT_SERVING; calls are still answered
  Result result = Run("health");
  EXPECT_EQ(result.exit_code, kExitNotServing);
  EXPECT_EQ(result.out, "NOT_SERVING\n");
  result = Run("health iommu.v1.Iommu");
  EXPECT_EQ(result.exit_code, kExitNotServing);
  EXPECT_EQ(result.out, "NOT_SERVING\n");
}

TEST_F(IommuctlTest, GlobalOptionsAreParsed) {
  CliOptions options;
  std::vector<std::string> command;
  ASSERT_TRUE(ParseGlobalOptions({"--target", "unix:/x.sock", "--owner=me", "--timeout", "3s",
                                  "--tls-ca", "ca.pem", "--tls-cert=c.pem", "--tls-key", "k.pem",
                                  "map", "1", "--prot", "r", "--json"},
                                 &options, &command)
                  .ok());
  EXPECT_EQ(options.target, "unix:/x.sock");
  EXPECT_EQ(options.owner, "me");
  EXPECT_EQ(options.timeout, absl::Seconds(3));
  EXPECT_EQ(options.tls_ca, "ca.pem");
  EXPECT_EQ(options.tls_cert, "c.pem");
  EXPECT_EQ(options.tls_key, "k.pem");
  EXPECT_TRUE(options.json);
  EXPECT_EQ(command, (std::vector<std::string>{"map", "1", "--prot", "r"}));
  EXPECT_FALSE(ParseGlobalOptions({"--timeout", "soon", "units"}, &options, &command).ok());
  EXPECT_FALSE(ParseGlobalOptions({"--color=always", "units"}, &options, &command).ok());
  EXPECT_FALSE(ParseGlobalOptions({"--target"}, &options, &command).ok());
}

TEST_F(IommuctlTest, WatchPrintsTheSnapshotThenChanges) {
  const std::string out = Ok("watch --count 2 --device 0000:00:02.0");
  EXPECT_THAT(out, HasSubstr("SNAPSHOT_GROUP unit=smmu0 group="));
  EXPECT_THAT(out, HasSubstr("SNAPSHOT_DEVICE unit=smmu0"));
}

}  // namespace
}  // namespace iommud
