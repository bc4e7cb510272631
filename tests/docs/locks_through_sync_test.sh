#!/bin/sh
# Every lock of an absl::Mutex goes through core/sync.h (iommud::MutexLock, ReaderMutexLock, ...):
# Debian's Abseil is not built for ThreadSanitizer, so a direct absl::MutexLock hides its
# happens-before edges from TSan, which then reports races that are not there (and the TSan step of
# CI fails). Usage: locks_through_sync_test.sh [repo root].
root=${1:-$(dirname "$0")/../..}
# The pattern is split so that this file does not match itself.
pattern='absl::\(Reader\|Writer\|Releasable\)\?Mutex''Lock\(Maybe\)\?\b'
found=$(grep -rn "$pattern" "$root/core" "$root/server" "$root/clients" "$root/tests" \
        --include='*.cc' --include='*.h' 2>/dev/null | grep -v "^$root/core/sync.h:")
if [ -n "$found" ]; then
  echo "$found"
  echo "FAIL: lock through core/sync.h (iommud::MutexLock / ReaderMutexLock), not absl's scoped locks"
  exit 1
fi
echo "OK: every scoped lock goes through core/sync.h"
