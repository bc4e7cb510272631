#include "server/daemon_flags.h"

#include <string>
#include <vector>

#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

TEST(DaemonFlagsTest, BackendOptions) {
  absl::StatusOr<BackendOptions> options =
      ParseBackendOptions({"memory_file=/var/lib/iommud/hw.mem", "expr=a=b", "empty="});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_THAT(*options, ElementsAre(Pair("empty", ""), Pair("expr", "a=b"),
                                    Pair("memory_file", "/var/lib/iommud/hw.mem")));
  EXPECT_TRUE(ParseBackendOptions({})->empty());
}

TEST(DaemonFlagsTest, MalformedBackendOptions) {
  for (const std::vector<std::string>& entries :
       std::vector<std::vector<std::string>>{{"novalue"}, {"=value"}, {"a=1", "a=2"}}) {
    absl::StatusOr<BackendOptions> options = ParseBackendOptions(entries);
    EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument) << entries[0];
    EXPECT_EQ(ErrorReason(options.status()), "INVALID_FLAG");
    EXPECT_EQ(GetErrorMetadata(options.status()).at("flag"), "backend_opt");
  }
}

TEST(DaemonFlagsTest, FdStoreMode) {
  EXPECT_EQ(*ParseFdStoreMode("auto"), FdStoreMode::kAuto);
  EXPECT_EQ(*ParseFdStoreMode("off"), FdStoreMode::kOff);
  EXPECT_EQ(*ParseFdStoreMode("required"), FdStoreMode::kRequired);
  for (const char* bad : {"", "on", "AUTO", "yes"}) {
    absl::StatusOr<FdStoreMode> mode = ParseFdStoreMode(bad);
    EXPECT_EQ(ErrorReason(mode.status()), "INVALID_FLAG") << bad;
  }
}

TEST(DaemonFlagsTest, DefaultDomainType) {
  EXPECT_EQ(*ParseDefaultDomainType("DMA"), DomainType::kDma);
  EXPECT_EQ(*ParseDefaultDomainType("dma_fq"), DomainType::kDmaFq);
  EXPECT_EQ(*ParseDefaultDomainType("Identity"), DomainType::kIdentity);
  for (const char* bad : {"", "UNMANAGED", "BLOCKED", "dma-fq"}) {
    absl::StatusOr<DomainType> type = ParseDefaultDomainType(bad);
    EXPECT_EQ(type.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(ErrorReason(type.status()), "INVALID_FLAG") << bad;
  }
}

// argv as absl sees it: mutable strings, null-terminated.
class Argv {
 public:
  explicit Argv(std::vector<std::string> args) : storage_(std::move(args)) {
    for (std::string& arg : storage_) pointers_.push_back(arg.data());
    pointers_.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(storage_.size()); }
  char** argv() { return pointers_.data(); }

 private:
  std::vector<std::string> storage_;
  std::vector<char*> pointers_;
};

std::vector<std::string> Remaining(int argc, char** argv) {
  return std::vector<std::string>(argv, argv + argc);
}

TEST(DaemonFlagsTest, FlagNamesMaySpellUnderscoresAsDashes) {
  Argv args({"iommud", "--insecure-tcp", "--state-dir=/tmp/a-b", "--tls-cert", "/x/my-cert.pem",
             "--backend_opt=memory-file=/m-f", "-5s", "--", "--not-a-flag"});
  NormalizeFlagNames(args.argc(), args.argv());
  EXPECT_THAT(Remaining(args.argc(), args.argv()),
              ElementsAre("iommud", "--insecure_tcp", "--state_dir=/tmp/a-b", "--tls_cert",
                          "/x/my-cert.pem", "--backend_opt=memory-file=/m-f", "-5s", "--",
                          "--not-a-flag"));
}

TEST(DaemonFlagsTest, ExtractRepeatedFlagKeepsEveryValueInOrder) {
  Argv args({"iommud", "--backend_opt=a=1", "--state_dir=/tmp/x", "--backend_opt", "b=2",
             "-backend_opt=c=3", "--backend=emulated"});
  int argc = args.argc();
  std::vector<std::string> values = ExtractRepeatedFlag("backend_opt", &argc, args.argv());
  EXPECT_THAT(values, ElementsAre("a=1", "b=2", "c=3"));
  EXPECT_THAT(Remaining(argc, args.argv()),
              ElementsAre("iommud", "--state_dir=/tmp/x", "--backend=emulated"));
  EXPECT_EQ(args.argv()[argc], nullptr);
}

TEST(DaemonFlagsTest, ExtractRepeatedFlagLeavesOthersAlone) {
  Argv args({"iommud", "--backend_optional=x", "backend_opt=y", "--backend_opt=z"});
  int argc = args.argc();
  std::vector<std::string> values = ExtractRepeatedFlag("backend_opt", &argc, args.argv());
  EXPECT_THAT(values, ElementsAre("z"));
  EXPECT_THAT(Remaining(argc, args.argv()),
              ElementsAre("iommud", "--backend_optional=x", "backend_opt=y"));
}

TEST(DaemonFlagsTest, ExtractRepeatedFlagStopsAtDoubleDashAndLeavesMissingValue) {
  Argv args({"iommud", "--", "--backend_opt=z"});
  int argc = args.argc();
  EXPECT_TRUE(ExtractRepeatedFlag("backend_opt", &argc, args.argv()).empty());
  EXPECT_THAT(Remaining(argc, args.argv()), ElementsAre("iommud", "--", "--backend_opt=z"));

  Argv trailing({"iommud", "--backend_opt"});
  argc = trailing.argc();
  EXPECT_TRUE(ExtractRepeatedFlag("backend_opt", &argc, trailing.argv()).empty());
  EXPECT_THAT(Remaining(argc, trailing.argv()), ElementsAre("iommud", "--backend_opt"));
}

}  // namespace
}  // namespace iommud
