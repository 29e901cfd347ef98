#!/usr/bin/env bash
# Write-back benchmark: folio against fio on the same file, in the same run.
#
#   1. random 4 KiB writes over a 1 GiB file, a sync every 1,000 writes
#        folio bench --workload uniform --read-ratio 0 --sync-every 1000 --direct
#        fio --rw=randwrite --bs=4k --direct=1 --iodepth=32 --ioengine=io_uring --fsync=1000
#   2. sequential 4 KiB writes of 1 GiB, then one sync
#        folio bench --workload seq --read-ratio 0 --final-sync --direct
#        fio --rw=write --bs=1M --direct=1 --iodepth=8 --ioengine=io_uring --end_fsync=1
#
# Each is run RUNS times (default 3), alternating folio and fio; the medians and the ratio
# folio/fio are printed. Usage: scripts/bench-writeback.sh [DIR] (default: a temp dir).
# Env: RUNS, SIZE (default 1GiB), BUDGET (folio cache budget, default 25%), THREADS (1),
# FOLIO (path of the folio binary; default: build it with --release).
set -euo pipefail

RUNS=${RUNS:-3}
SIZE=${SIZE:-1GiB}
BUDGET=${BUDGET:-25%}
THREADS=${THREADS:-1}
cd "$(dirname "$0")/.."

if [[ -z "${FOLIO:-}" ]]; then
    cargo build --release -p folio-cli --quiet
    FOLIO=target/release/folio
fi
command -v fio >/dev/null || { echo "fio is not installed (apt-get install fio)" >&2; exit 1; }

DIR=${1:-$(mktemp -d /var/tmp/folio-wb.XXXXXX)}
CLEAN_DIR=$([[ $# -eq 0 ]] && echo yes || echo no)
IMG=$DIR/wb.img
cleanup() { rm -f "$IMG"; [[ $CLEAN_DIR == yes ]] && rmdir "$DIR" 2>/dev/null || true; }
trap cleanup EXIT

bytes() { numfmt --from=iec-i "${1%B}" 2>/dev/null || numfmt --from=iec "${1%B}"; }
SIZE_B=$(bytes "$SIZE")
PAGES=$((SIZE_B / 4096))

# A fully written image, so neither tool measures allocation of holes.
if [[ ! -f $IMG ]] || [[ $(stat -c %s "$IMG") -ne $SIZE_B ]]; then
    echo "creating $SIZE image at $IMG" >&2
    fio --name=fill --filename="$IMG" --size="$SIZE_B" --rw=write --bs=1M --direct=1 \
        --ioengine=io_uring --iodepth=8 --end_fsync=1 >/dev/null
fi

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

folio_run() { # extra args...; prints ops/s
    "$FOLIO" bench --image "$IMG" --budget "$BUDGET" --threads "$THREADS" --read-ratio 0 \
        --io-size 4096 --direct --json "$@" | json_field "['ops_per_sec']"
}

fio_run() { # extra args...; prints write IOPS
    fio --name=wb --filename="$IMG" --size="$SIZE_B" --direct=1 --ioengine=io_uring \
        --output-format=json "$@" | json_field "['jobs'][0]['write']['iops']"
}

declare -a F_RAND FIO_RAND FIO_NOSYNC F_SEQ FIO_SEQ
for ((r = 1; r <= RUNS; r++)); do
    echo "run $r/$RUNS" >&2
    F_RAND+=("$(folio_run --workload uniform --ops "$PAGES" --sync-every 1000)")
    FIO_RAND+=("$(fio_run --rw=randwrite --bs=4k --iodepth=32 --fsync=1000 --randrepeat=0)")
    # Context: fio queues its fsync beside the writes in flight instead of draining them first,
    # so its fsync costs it almost nothing; sync() must wait for every earlier write.
    FIO_NOSYNC+=("$(fio_run --rw=randwrite --bs=4k --iodepth=32 --randrepeat=0)")
    F_SEQ+=("$(folio_run --workload seq --ops "$PAGES" --final-sync)")
    FIO_SEQ+=("$(fio_run --rw=write --bs=1M --iodepth=8 --end_fsync=1)")
done

m() { printf '%s\n' "$@" | median; }
FR=$(m "${F_RAND[@]}"); XR=$(m "${FIO_RAND[@]}"); XN=$(m "${FIO_NOSYNC[@]}")
FS=$(m "${F_SEQ[@]}"); XS=$(m "${FIO_SEQ[@]}")
# Sequential figures as MiB/s: folio does 4 KiB ops, fio 1 MiB ops.
FS_MB=$(awk -v x="$FS" 'BEGIN {printf "%.0f", x * 4096 / 1048576}')
XS_MB=$(awk -v x="$XS" 'BEGIN {printf "%.0f", x}')

echo
echo "write-back benchmark: $SIZE file, folio budget $BUDGET, $THREADS thread(s), median of $RUNS"
printf '%-44s %14s %14s %8s\n' "workload" "folio" "fio" "folio/fio"
printf '%-44s %10.0f IOPS %10.0f IOPS %8.2f\n' "random 4 KiB writes, sync every 1000" \
    "$FR" "$XR" "$(awk -v a="$FR" -v b="$XR" 'BEGIN {print a / b}')"
printf '%-44s %14s %10.0f IOPS %8.2f\n' "  (fio without any fsync, for context)" "" \
    "$XN" "$(awk -v a="$FR" -v b="$XN" 'BEGIN {print a / b}')"
printf '%-44s %9s MiB/s %9s MiB/s %8.2f\n' "sequential writes of $SIZE, then sync" \
    "$FS_MB" "$XS_MB" "$(awk -v a="$FS_MB" -v b="$XS_MB" 'BEGIN {print a / b}')"
echo "runs: folio rand ${F_RAND[*]} | fio rand ${FIO_RAND[*]} | fio no fsync ${FIO_NOSYNC[*]} | folio seq ${F_SEQ[*]} | fio seq ${FIO_SEQ[*]} (ops/s)"
