#!/usr/bin/env bash
# Builds the cargo-fuzz targets and runs each one for a while; exits non-zero on the first crash,
# timeout or out-of-memory (libFuzzer writes the input to crates/fuzz/artifacts/<target>/).
#
#   bash crates/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   (default 20 s, every target)
#
# Installs cargo-fuzz when it is missing and needs the nightly toolchain (rustup). Seeds come
# from crates/fuzz/seed.py when the conformance data is there (FUZZ_CONFORMANCE, default
# /work/shared/conformance); otherwise the targets start from an empty corpus.
# Extra libFuzzer flags: FUZZ_FLAGS (e.g. FUZZ_FLAGS="-jobs=2 -workers=2").
set -euo pipefail

seconds="${1:-20}"
shift || true
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "run.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# No sanitizer: the code under test has no unsafe code (`unsafe_code = "forbid"`), and ASan's
# larger stack frames would make the stack bounds (crates/asl/src/depth.rs) report overflows that
# an uninstrumented build does not have. Debug assertions (overflow checks) are on.
build_flags=(--fuzz-dir crates/fuzz -s none -a)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir crates/fuzz)
fi

conformance="${FUZZ_CONFORMANCE:-/work/shared/conformance}"
if [ -d "$conformance/localstack" ] && [ -d "$conformance/jsonata" ]; then
    python3 crates/fuzz/seed.py --conformance "$conformance" >/dev/null
fi

cargo +nightly fuzz build "${build_flags[@]}"

failed=()
mkdir -p crates/fuzz/artifacts
for t in "${targets[@]}"; do
    mkdir -p "crates/fuzz/corpus/$t"
    echo "== $t (${seconds}s)"
    # -timeout: one input running longer than 10 s is a hang; -rss_limit_mb: 2 GiB is an OOM.
    # ulimit -v: an allocation burst faster than libFuzzer's once-a-second RSS check would
    # otherwise meet the kernel's OOM killer (SIGKILL: no report, no input kept); under the
    # limit the allocation fails, the process aborts and libFuzzer writes the input.
    set +e
    # shellcheck disable=SC2086
    (
        ulimit -v "${FUZZ_VMEM_KB:-8000000}"
        exec cargo +nightly fuzz run "${build_flags[@]}" "$t" "crates/fuzz/corpus/$t" -- \
            -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            ${FUZZ_FLAGS:-}
    ) >"crates/fuzz/artifacts/$t.log" 2>&1
    status=$?
    set -e
    grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)|^Done [0-9]+ runs|^stat::(number_of_executed_units|peak_rss_mb)|^SUMMARY|panicked at|deadly signal|ERROR: libFuzzer' \
        "crates/fuzz/artifacts/$t.log" || true
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        # What the filter above may not show (a signal from outside, a build error).
        echo "run.sh: $t exited with status $status; the end of crates/fuzz/artifacts/$t.log:" >&2
        tail -n 40 "crates/fuzz/artifacts/$t.log" >&2
        ls -l "crates/fuzz/artifacts/$t/" >&2 2>/dev/null || true
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: crashes in: ${failed[*]} (inputs in crates/fuzz/artifacts/)" >&2
    exit 1
fi
echo "run.sh: ${#targets[@]} targets, ${seconds}s each, no crash"
