#!/usr/bin/env bash
# Coverage-guided fuzzing of the BGP codec and session core (fuzz/, cargo-afl with AFL++).
# Usage: scripts/fuzz-bgp.sh [EXECUTIONS] (default 10,000,000). Builds fuzz/ with AFL
# instrumentation, replays the seed corpus through the harness, fuzzes from fuzz/seeds until
# that many executions, then prints executions, crashes, hangs and wall time. Findings stay in
# fuzz/out/default/{crashes,hangs} (not committed); a crash's file reproduces with
# `fuzz/target/release/bgp_input < FILE`. Runs niced and unbound to any core; exits 1 on
# any crash or hang.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
execs="${1:-10000000}"

if ! cargo afl --version >/dev/null 2>&1; then
    echo "cargo-afl is missing: cargo install cargo-afl && cargo afl config --build" >&2
    exit 2
fi

nice -n 19 cargo test --release --lib --quiet
nice -n 19 cargo afl build --release --bin bgp_input --quiet

rm -rf out
start=$(date +%s)
# -E: stop after this many executions. -t: a single input taking over a second is a hang.
AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
    AFL_SUPPRESS_ENV_WARNINGS=1 \
    nice -n 19 cargo afl fuzz -i seeds -o out -E "$execs" -t 1000 target/release/bgp_input \
    >out.log 2>&1 || { tail -30 out.log >&2; exit 2; }
end=$(date +%s)

stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' out/default/fuzzer_stats; }
crashes=$(stat saved_crashes)
hangs=$(stat saved_hangs)
printf 'executions  %s\n' "$(stat execs_done)"
printf 'exec/s      %s\n' "$(stat execs_per_sec)"
printf 'corpus      %s inputs, edges found %s\n' "$(stat corpus_count)" "$(stat edges_found)"
printf 'crashes     %s\n' "$crashes"
printf 'hangs       %s\n' "$hangs"
printf 'wall time   %ss\n' "$((end - start))"
rm -f out.log
[ "$crashes" = 0 ] && [ "$hangs" = 0 ]
