#!/bin/sh
# Every lock of an absl::Mutex goes through core/sync.h (iommud::MutexLock, ReaderMutexLock, ...):
# Debian's Abseil is not built for ThreadSanitizer, so a direct absl::MutexLock hides its
# happens-before edges from TSan, which then reports races that are not there (and the TSan step of
# CI fails). The same holds for waits: absl::Mutex::Await/LockWhen (whose condition absl may evaluate
# on another thread) and CondVar waits outside iommud::WaitWithDeadline.
# Usage: locks_through_sync_test.sh [repo root].
root=${1:-$(dirname "$0")/../..}
# The pattern is split so that this file does not match itself.
pattern='absl::\(Reader\|Writer\|Releasable\)\?Mutex''Lock\(Maybe\)\?\b\|[.>]Await''\(With[A-Za-z]*\)\?(\|[.>]\(Reader\|Writer\)\?LockWhen''\|[.>]Wait''\(WithTimeout\|WithDeadline\)\?(&'
found=$(grep -rn "$pattern" "$root/core" "$root/server" "$root/clients" "$root/tests" \
        --include='*.cc' --include='*.h' 2>/dev/null | grep -v "^$root/core/sync.h:")
if [ -n "$found" ]; then
  echo "$found"
  echo "FAIL: lock and wait through core/sync.h (iommud::MutexLock / ReaderMutexLock / WaitWithDeadline), not absl's own"
  exit 1
fi
echo "OK: every lock and wait goes through core/sync.h"
