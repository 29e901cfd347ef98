#!/usr/bin/env bash
# Runs the benchmarks whose targets the README reports, INVOCATIONS times each (default 5, the
# verdict rule's minimum), interleaved (io, hot, writeback, io, ...) so that a drift of the
# machine reaches every benchmark alike, appends every invocation's raw runs to
# bench/results/<bench>.jsonl, then regenerates the README's table and docs/benchmarks.md.
#
#   bench/run-all.sh              # the real thing: run it on a quiet machine (about 45 min)
#   SMOKE=1 bench/run-all.sh      # tiny sizes, one run each: checks the machinery (under a
#                                 # minute after the build); results go to a temporary
#                                 # directory, never to bench/results
#
# Env: INVOCATIONS (5), RUNS (5 per contender per invocation; 2 takes about 20 min), BENCHES ("io hot writeback"), WORK (scratch directory on a disk that
# accepts O_DIRECT; default a new one under /var/tmp), RESULTS (default bench/results; another
# directory leaves the tables alone). Needs fio and python3 3.11+.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

INVOCATIONS=${INVOCATIONS:-5}
# Runs of every contender inside one invocation (each invocation's ratio is of their medians).
RUNS=${RUNS:-5}
BENCHES=${BENCHES:-"io hot writeback"}
SMOKE=${SMOKE:-0}
for bin in fio python3; do
    command -v "$bin" >/dev/null || { echo "missing $bin" >&2; exit 1; }
done

if [[ -z ${WORK:-} ]]; then
    WORK=$(mktemp -d /var/tmp/folio-bench.XXXXXX)
    cleanup() { rm -rf "$WORK"; }
else
    # A directory given by the caller: only what this script puts there is removed.
    mkdir -p "$WORK"
    cleanup() { rm -rf "$WORK/io.img" "$WORK/hot.img" "$WORK/results" "$WORK/root"; }
fi
trap cleanup EXIT

if [[ $SMOKE == 1 ]]; then
    RESULTS=$WORK/results
    INVOCATIONS=${SMOKE_INVOCATIONS:-1}
    IO_ARGS=(--size 64MiB --runs 1 --flush-size 16MiB --flush-depths 1,8 --ops 4096 --smoke)
    HOT_ARGS=(--size 16MiB --ops 20000 --runs 1 --threads 2 --smoke)
    WB_ENV=(RUNS=1 SIZE=64MiB DEPTHS="1 8" SMOKE=1)
else
    # RESULTS elsewhere (e.g. to time a round without recording it): the tables are not
    # regenerated.
    RESULTS=${RESULTS:-$ROOT/bench/results}
    IO_ARGS=(--runs "$RUNS")
    HOT_ARGS=(--runs "$RUNS" --threads 2)
    WB_ENV=(RUNS="$RUNS")
fi

echo "building the release binary" >&2
nice cargo build --release -p folio-cli --quiet
FOLIO=$ROOT/target/release/folio
# Every line records the commit; a dirty tree is recorded as such (and is its own commit for the
# verdicts).
if [[ -n $(git status --porcelain --untracked-files=no -- . ":(exclude)bench/results" ":(exclude)README.md" ":(exclude)docs/benchmarks.md" 2>/dev/null) ]]; then
    echo "note: the working tree has uncommitted changes; lines are recorded as <sha>-dirty" >&2
fi

started=$(date +%s)
for ((i = 1; i <= INVOCATIONS; i++)); do
    for bench in $BENCHES; do
        echo "== invocation $i/$INVOCATIONS: $bench ($(( $(date +%s) - started )) s so far)" >&2
        case $bench in
            io)
                "$FOLIO" bench io --image "$WORK/io.img" --results "$RESULTS" "${IO_ARGS[@]}"
                ;;
            hot)
                "$FOLIO" bench --hot --image "$WORK/hot.img" --results "$RESULTS" "${HOT_ARGS[@]}"
                ;;
            writeback)
                env "${WB_ENV[@]}" FOLIO="$FOLIO" RESULTS="$RESULTS" \
                    scripts/bench-writeback.sh "$WORK"
                ;;
            *) echo "unknown benchmark $bench" >&2; exit 2 ;;
        esac
    done
done
echo "== ran for $(( $(date +%s) - started )) s" >&2

if [[ $SMOKE == 1 ]]; then
    # Regenerate into a scratch copy, counting the smoke lines, to show the pipeline end to end.
    mkdir -p "$WORK/root/bench" "$WORK/root/docs"
    cp README.md "$WORK/root/"
    cp bench/targets.toml "$WORK/root/bench/"
    cp -r "$RESULTS" "$WORK/root/bench/results"
    python3 bench/report.py --root "$WORK/root" --include-smoke
    echo "smoke table (not results: one tiny run each, on whatever the machine was doing):" >&2
    sed -n '/results:begin/,/results:end/p' "$WORK/root/README.md"
elif [[ $RESULTS == "$ROOT/bench/results" ]]; then
    python3 bench/report.py
    echo "regenerated README.md and docs/benchmarks.md; commit them with bench/results/" >&2
fi
