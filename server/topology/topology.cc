#include "server/topology/topology.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "server/topology/demo_topology.h"

namespace iommud {
namespace {

using ::google::protobuf::TextFormat;

// Keeps the first error of the text parser (it reports 0-based lines and columns).
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (has_error_) return;
    has_error_ = true;
    line_ = line + 1;
    column_ = column + 1;
    message_ = message;
  }

  bool has_error() const { return has_error_; }
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& message() const { return message_; }

 private:
  bool has_error_ = false;
  int line_ = 0;
  int column_ = 0;
  std::string message_;
};

absl::Status TopologyError(absl::string_view source, int line, int column, absl::string_view what) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidTopology,
               absl::StrCat(source, ":", line, ":", column, ": ", what),
               {{"source", std::string(source)}, {"line", absl::StrCat(line)}});
}

// 1-based line of element `index` of repeated field `name` of `message`, 0 if unknown.
int LineOf(const TextFormat::ParseInfoTree& tree, const google::protobuf::Descriptor* message,
           absl::string_view name, int index) {
  const google::protobuf::FieldDescriptor* field = message->FindFieldByName(std::string(name));
  if (field == nullptr) return 0;
  return tree.GetLocation(field, index).line + 1;
}

}  // namespace

absl::StatusOr<LoadedTopology> ParseTopology(absl::string_view text, absl::string_view source) {
  LoadedTopology loaded;
  loaded.source = std::string(source);
  FirstErrorCollector errors;
  TextFormat::ParseInfoTree tree;
  TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&tree);
  if (!parser.ParseFromString(std::string(text), &loaded.topology)) {
    if (!errors.has_error())
      return TopologyError(source, 1, 1, "not a text-format iommu.v1.Topology");
    return TopologyError(source, errors.line(), errors.column(), errors.message());
  }
  const google::protobuf::Descriptor* descriptor = iommu::v1::Topology::descriptor();
  for (int i = 0; i < loaded.topology.units_size(); ++i) {
    loaded.unit_lines.push_back(LineOf(tree, descriptor, "units", i));
  }
  for (int i = 0; i < loaded.topology.devices_size(); ++i) {
    loaded.device_lines.push_back(LineOf(tree, descriptor, "devices", i));
  }
  return loaded;
}

absl::StatusOr<LoadedTopology> LoadTopologyFile(const std::string& path) {
  auto unreadable = [&path](int error) {
    return Error(absl::StatusCode::kNotFound, reason::kTopologyUnreadable,
                 absl::StrCat("cannot read topology file '", path, "': ", std::strerror(error)),
                 {{"source", path}});
  };
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return unreadable(errno);
  std::string text;
  char buffer[8192];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      close(fd);
      return unreadable(error);  // e.g. EISDIR
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return ParseTopology(text, path);
}

absl::StatusOr<LoadedTopology> LoadDemoTopology() {
  return ParseTopology(DemoTopologyText(), kDemoTopologySource);
}

}  // namespace iommud
