#!/bin/sh
# The contract lives in docs/: no file of the repository may point at design documents outside it
# (the design documents that used to live in a sibling directory). Usage:
# no_outside_design_refs_test.sh [repo root].
root=${1:-$(dirname "$0")/../..}
# The pattern is split so that this file does not match itself.
pattern='shared''/design\|\.\./shared''/'
found=$(grep -rn "$pattern" "$root" --exclude-dir=.git --exclude-dir='build*' --exclude-dir='bazel-*' \
        --exclude-dir=__pycache__ 2>/dev/null)
if [ -n "$found" ]; then
  echo "$found"
  echo "FAIL: point at docs/ instead (docs/semantics.md, docs/architecture.md, docs/building.md)"
  exit 1
fi
echo "OK: no references to design documents outside the repository"
