#include "core/store/request_context.h"

namespace iommud {
namespace {

thread_local RequestRecord* current_record = nullptr;
thread_local bool current_taken = false;

}  // namespace

ScopedRequestContext::ScopedRequestContext(RequestRecord* record)
    : previous_(current_record), previous_taken_(current_taken) {
  current_record = record;
  current_taken = false;
}

ScopedRequestContext::~ScopedRequestContext() {
  current_record = previous_;
  current_taken = previous_taken_;
}

RequestRecord* ScopedRequestContext::Current() { return current_record; }

RequestRecord* ScopedRequestContext::Pending() {
  return current_taken ? nullptr : current_record;
}

void ScopedRequestContext::MarkCommitted() {
  if (current_record != nullptr) current_taken = true;
}

bool ScopedRequestContext::Committed() { return current_record != nullptr && current_taken; }

}  // namespace iommud
