#!/usr/bin/env bash
# The test command: installs what is missing (Debian packages only), then runs
#   1. every test (Criterion unit tests, integration tests, fuzz corpus replays): bazel test //...
#   2. the same tests under AddressSanitizer + UndefinedBehaviorSanitizer: --config=asan
#   3. each libFuzzer target for FUZZ_SECONDS (default 20) when clang is there: --config=fuzz
# after checking that every C file is formatted as .clang-format says.
# and ends with one line "tests: N passed, M failed". Exit 0 only if everything passed.
set -euo pipefail
cd "$(dirname "$0")"

tools/install-deps.sh --test

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
status=0
declare -i passed=0 failed=0

# tally [BAZEL FLAGS]: adds up the Criterion and plain "N passed, M failed" lines of every test
# log of the last `bazel test` run with those flags.
tally() {
    local logs
    logs=$(find "$(bazel info "$@" bazel-testlogs 2>/dev/null)" -name test.log \
        -not -path '*/run_*_of_*/*' 2>/dev/null || true)
    [[ -n "$logs" ]] || return 0
    local p f
    read -r p f < <(cat $logs | awk '
        /Synthesis: Tested:/ { for (i = 1; i <= NF; i++) { if ($i == "Passing:") p += $(i+1); if ($i == "Failing:" || $i == "Crashing:") f += $(i+1) } }
        /[0-9]+ passed, [0-9]+ failed/ && !/Synthesis/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed,?$/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
        END { print p + 0, f + 0 }')
    passed+=p
    failed+=f
}

echo "== clang-format --dry-run (STYLE.md §9, .clang-format)"
mapfile -t sources < <(find . \( -name 'bazel-*' -o -name .git \) -prune -o \
    \( -name '*.c' -o -name '*.h' \) -print | sort)
if clang-format --dry-run --Werror "${sources[@]}"; then
    echo "format: 1 passed, 0 failed"
    passed+=1
else
    echo "format: 0 passed, 1 failed (run: clang-format -i on the files above)"
    failed+=1
    status=1
fi

echo "== bazel test //..."
bazel test //... || status=1
tally

echo "== bazel test --config=asan //... (ASan + UBSan)"
bazel test --config=asan //... || status=1
tally --config=asan

if command -v clang >/dev/null; then
    echo "== fuzzing each target for ${FUZZ_SECONDS}s"
    bazel build --config=fuzz //test/fuzz:all || status=1
    fuzz_bin=$(bazel info --config=fuzz bazel-bin)/test/fuzz
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    for t in test/fuzz/*_fuzz.c; do
        name=$(basename "$t" .c)
        corpus=test/fuzz/corpus/${name%_fuzz}
        mkdir -p "$work/$name" "$work/$name.artifacts"
        cp -r "$corpus"/. "$work/$name/" 2>/dev/null || true
        if "$fuzz_bin/$name" -max_total_time="$FUZZ_SECONDS" \
            -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$work/$name.artifacts/" "$work/$name" >"$work/$name.log" 2>&1; then
            echo "fuzz $name: $(grep -E '^Done [0-9]+ runs' "$work/$name.log" || echo done), no crash"
            passed+=1
        else
            echo "fuzz $name: FAILED; last lines of its log, and the input that broke it:"
            tail -n 30 "$work/$name.log"
            mkdir -p fuzz-artifacts && cp "$work/$name.artifacts"/* fuzz-artifacts/ 2>/dev/null || true
            echo "(inputs copied to fuzz-artifacts/; add them to $corpus to keep them as tests)"
            failed+=1
            status=1
        fi
    done
else
    echo "== clang not found: fuzzing skipped"
fi

[[ $status -ne 0 && $failed -eq 0 ]] && failed=1  # a build failure counts, even with no test log
echo "tests: $passed passed, $failed failed"
exit $status
