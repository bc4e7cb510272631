#include "server/api/request_bounds.h"

#include <google/protobuf/descriptor.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

absl::Status CheckMessage(const Message& message, const RequestBounds& bounds,
                          const std::string& prefix) {
  const Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);  // only the fields that are set
  for (const FieldDescriptor* field : fields) {
    const std::string name = prefix + field->name();
    if (field->is_repeated()) {
      const int count = reflection->FieldSize(message, field);
      if (static_cast<uint64_t>(count) > bounds.max_repeated) {
        return Error(absl::StatusCode::kInvalidArgument, reason::kTooManyElements,
                     absl::StrCat(name, " has ", count, " elements; at most ",
                                  bounds.max_repeated, " are accepted"),
                     {{"field", name},
                      {"count", absl::StrCat(count)},
                      {"limit", absl::StrCat(bounds.max_repeated)}});
      }
    }
    const bool is_string = field->cpp_type() == FieldDescriptor::CPPTYPE_STRING;
    const bool is_message = field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
    if (!is_string && !is_message) continue;
    const int count = field->is_repeated() ? reflection->FieldSize(message, field) : 1;
    for (int i = 0; i < count; ++i) {
      if (is_string) {
        std::string scratch;
        const std::string& value =
            field->is_repeated()
                ? reflection->GetRepeatedStringReference(message, field, i, &scratch)
                : reflection->GetStringReference(message, field, &scratch);
        if (value.size() > bounds.max_string_bytes) {
          return Error(absl::StatusCode::kInvalidArgument, reason::kFieldTooLong,
                       absl::StrCat(name, " is ", value.size(), " bytes long; at most ",
                                    bounds.max_string_bytes, " are accepted"),
                       {{"field", name},
                        {"length", absl::StrCat(value.size())},
                        {"limit", absl::StrCat(bounds.max_string_bytes)}});
        }
      } else {
        const Message& sub = field->is_repeated()
                                 ? reflection->GetRepeatedMessage(message, field, i)
                                 : reflection->GetMessage(message, field);
        absl::Status status = CheckMessage(sub, bounds, name + ".");
        if (!status.ok()) return status;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckFieldBounds(const Message& request, const RequestBounds& bounds) {
  return CheckMessage(request, bounds, "");
}

absl::Status CheckMapSize(uint64_t size, const RequestBounds& bounds) {
  if (size <= bounds.max_map_bytes) return absl::OkStatus();
  return Error(absl::StatusCode::kResourceExhausted, reason::kRequestTooLarge,
               absl::StrCat("a Map of ", size, " bytes exceeds the daemon's limit of ",
                            bounds.max_map_bytes, " bytes per call (--max_map_bytes); map the "
                            "range in several calls"),
               {{"field", "size"},
                {"size", absl::StrCat(size)},
                {"limit", absl::StrCat(bounds.max_map_bytes)}});
}

}  // namespace iommud
