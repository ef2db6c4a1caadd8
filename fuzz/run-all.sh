#!/usr/bin/env bash
# Run every fuzz target for TIME seconds (default 60), one after another.
# New inputs go to corpus/<target>/ (git-ignored); seeds/<target>/ is read
# only. Crashes land in artifacts/<target>/. Exits non-zero if any target
# found a crash.
set -uo pipefail

TIME="${1:-60}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

failed=()
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    echo "=== $target: ${TIME}s"
    if ! cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$TIME" -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "crashes in: ${failed[*]} (see artifacts/)" >&2
    exit 1
fi
echo "all targets ran ${TIME}s without a crash"
