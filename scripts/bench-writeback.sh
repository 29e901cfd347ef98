#!/usr/bin/env bash
# Write-back benchmark: folio against fio on the same file, in the same invocation, at equal
# depths (writes in flight on each side).
#
#   1. RAND_OPS (default 65,536: 256 MiB) random 4 KiB writes over a 1 GiB file, a sync every
#      1,000 writes
#        folio bench --workload uniform --read-ratio 0 --sync-every 1000 --direct --queue-depth D
#        fio --rw=randwrite --bs=4k --direct=1 --iodepth=D --ioengine=io_uring --fsync=1000
#            --number_ios=RAND_OPS
#      (and, for context, the same fio job without fsync)
#   2. sequential 4 KiB writes of 1 GiB, then one sync
#        folio bench --workload seq --read-ratio 0 --final-sync --direct --queue-depth D
#        fio --rw=write --bs=1M --direct=1 --iodepth=D --ioengine=io_uring --end_fsync=1
#
# for each depth D of DEPTHS (default "1 8 32 64"). Folio's ring has depth D, so at most D
# write-backs (each up to 1 MiB) are in flight, as fio's D writes. Folio writes random page
# contents (as fio's buffers). Each pair runs RUNS times (default 5), alternating folio and
# fio; medians and ratios are printed, and every run of every contender is appended as one line
# to bench/results/writeback.jsonl (RESULTS=none: not recorded; SMOKE=1: marked as a smoke run,
# left out of the verdicts).
#
# Usage: scripts/bench-writeback.sh [DIR] (default: a temp dir under /var/tmp).
# Env: RUNS, DEPTHS, SIZE (default 1GiB), RAND_OPS, BUDGET (folio cache budget, default 25%),
# THREADS (1), FOLIO (path of the folio binary; default: build it with --release), RESULTS, SMOKE.
# About 2-3 minutes per run of all four depths on the development VM.
set -euo pipefail

RUNS=${RUNS:-5}
DEPTHS=${DEPTHS:-"1 8 32 64"}
SIZE=${SIZE:-1GiB}
BUDGET=${BUDGET:-25%}
THREADS=${THREADS:-1}
SMOKE=${SMOKE:-0}
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-$PWD/bench/results}

if [[ -z "${FOLIO:-}" ]]; then
    cargo build --release -p folio-cli --quiet
    FOLIO=$PWD/target/release/folio
fi
command -v fio >/dev/null || { echo "fio is not installed (apt-get install fio)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is not installed" >&2; exit 1; }

DIR=${1:-$(mktemp -d /var/tmp/folio-wb.XXXXXX)}
CLEAN_DIR=$([[ $# -eq 0 ]] && echo yes || echo no)
IMG=$DIR/wb.img
RUNS_TSV=$DIR/wb-runs.tsv
cleanup() { rm -f "$IMG" "$RUNS_TSV"; [[ $CLEAN_DIR == yes ]] && rmdir "$DIR" 2>/dev/null || true; }
trap cleanup EXIT
: > "$RUNS_TSV"

bytes() { numfmt --from=iec-i "${1%B}" 2>/dev/null || numfmt --from=iec "${1%B}"; }
SIZE_B=$(bytes "$SIZE")
PAGES=$((SIZE_B / 4096))
RAND_OPS=${RAND_OPS:-$((PAGES < 65536 ? PAGES : 65536))}

# A fully written image, so neither tool measures allocation of holes.
if [[ ! -f $IMG ]] || [[ $(stat -c %s "$IMG") -ne $SIZE_B ]]; then
    echo "creating $SIZE image at $IMG" >&2
    fio --name=fill --filename="$IMG" --size="$SIZE_B" --rw=write --bs=1M --direct=1 \
        --ioengine=io_uring --iodepth=8 --end_fsync=1 >/dev/null
fi

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

folio_run() { # depth, extra args...; prints ops/s
    local depth=$1
    shift
    "$FOLIO" bench --image "$IMG" --budget "$BUDGET" --threads "$THREADS" --read-ratio 0 \
        --io-size 4096 --direct --queue-depth "$depth" --results none --json "$@" \
        | json_field "['ops_per_sec']"
}

fio_run() { # extra args...; prints write IOPS
    fio --name=wb --filename="$IMG" --size="$SIZE_B" --direct=1 --ioengine=io_uring \
        --output-format=json "$@" | json_field "['jobs'][0]['write']['iops']"
}

# One line per run: workload, contender, unit, value.
note() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RUNS_TSV"; }

for ((r = 1; r <= RUNS; r++)); do
    for d in $DEPTHS; do
        echo "run $r/$RUNS, depth $d" >&2
        rw="randwrite 4KiB, sync every 1000, $d in flight"
        note "$rw" folio IOPS \
            "$(folio_run "$d" --workload uniform --ops "$RAND_OPS" --sync-every 1000)"
        note "$rw" "fio randwrite fsync=1000" IOPS "$(fio_run --rw=randwrite --bs=4k \
            --iodepth="$d" --fsync=1000 --randrepeat=0 --number_ios="$RAND_OPS")"
        # Context: fio queues its fsync beside the writes in flight instead of draining them
        # first; sync() must wait for every earlier write.
        note "$rw" "fio randwrite, no fsync (context)" IOPS "$(fio_run --rw=randwrite --bs=4k \
            --iodepth="$d" --randrepeat=0 --number_ios="$RAND_OPS")"
        sw="seqwrite $SIZE then sync, $d in flight"
        ops=$(folio_run "$d" --workload seq --ops "$PAGES" --final-sync)
        note "$sw" folio MiB/s "$(awk -v x="$ops" 'BEGIN {print x * 4096 / 1048576}')"
        # fio's IOPS of 1 MiB writes are MiB/s.
        note "$sw" "fio write bs=1M + fsync" MiB/s \
            "$(fio_run --rw=write --bs=1M --iodepth="$d" --end_fsync=1)"
    done
done

# Medians and ratios, then one results line for the whole invocation.
python3 - "$RUNS_TSV" "$SIZE" "$BUDGET" "$THREADS" "$RUNS" "$DEPTHS" "$SMOKE" "$RAND_OPS" \
    > "$DIR/wb.json" <<'EOF'
import json, statistics, sys
tsv, size, budget, threads, runs, depths, smoke, rand_ops = sys.argv[1:]
rows = {}
for line in open(tsv):
    w, c, unit, v = line.rstrip("\n").split("\t")
    rows.setdefault((w, c, unit), []).append(float(v))
out = {"params": {"size": size, "budget": budget, "threads": int(threads), "runs": int(runs),
                  "rand_ops": int(rand_ops),
                  "depths": [int(d) for d in depths.split()], "direct": True,
                  "backend": "io_uring", "folio_page_contents": "random", "smoke": smoke == "1"},
       "rows": [{"workload": w, "contender": c, "unit": u, "higher_is_better": True, "runs": v}
                for (w, c, u), v in rows.items()]}
print(json.dumps(out))
med = statistics.median
print(f"\nwrite-back benchmark: {size} file, folio budget {budget}, {threads} thread(s), "
      f"median of {runs}", file=sys.stderr)
for (w, c, u), v in rows.items():
    if c == "folio":
        continue
    f = rows.get((w, "folio", u))
    if not f:
        continue
    ratio = f"{med(f) / med(v):.2f}"
    print(f"  {w:<48} folio {med(f):>10.0f} {u:<5}  {c:<34} {med(v):>10.0f}  folio/it {ratio}",
          file=sys.stderr)
EOF
if [[ $RESULTS != none ]]; then
    "$FOLIO" bench record --bench writeback --results "$RESULTS" < "$DIR/wb.json"
fi
rm -f "$DIR/wb.json"
