#!/usr/bin/env bash
# Benchmarks `folio serve` against qemu-nbd and nbdkit with fio's nbd engine (libnbd).
#
#   scripts/bench-nbd.sh [--size 1G] [--runs 3] [--runtime 8] [--dir DIR] [--no-drop-caches]
#
# Servers (all on 127.0.0.1, one at a time, same raw image):
#   folio    target/release/folio serve IMG --budget 2GiB   (page cache holds the whole image)
#   qemu-nbd qemu-nbd --cache=writeback --aio=io_uring (falls back to --aio=threads)
#   nbdkit   nbdkit file IMG --filter=cache (cache filter if installed)
# Workloads: 4 KiB random reads (depth 16), 4 KiB random writes (depth 16), 1 MiB sequential
# reads (depth 4). "cold": a freshly started server, and the kernel page cache dropped
# (echo 3 > /proc/sys/vm/drop_caches, as root) unless --no-drop-caches. "warm": the same
# server after one full sequential read pass over the image. Each cell is the median of
# --runs runs; ratios are folio / peer (higher is better for folio).
set -euo pipefail

SIZE=1G
RUNS=3
RUNTIME=8
DIR=""
DROP=1
while [ $# -gt 0 ]; do
    case "$1" in
        --size) SIZE=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --runtime) RUNTIME=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --no-drop-caches) DROP=0; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
for bin in fio qemu-nbd nbdkit python3; do
    command -v "$bin" >/dev/null || { echo "missing $bin" >&2; exit 1; }
done
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "this fio has no nbd engine" >&2; exit 1; }
cargo build --release -q -p folio-cli
FOLIO=$PWD/target/release/folio

AUTO=0
if [ -z "$DIR" ]; then DIR=$(mktemp -d /tmp/bench-nbd.XXXXXX); AUTO=1; fi
IMG=$DIR/image.raw
RES=$DIR/results.tsv
: > "$RES"
if [ ! -f "$IMG" ]; then
    echo "creating $SIZE image $IMG" >&2
    fio --name=fill --filename="$IMG" --size="$SIZE" --rw=write --bs=1M --direct=0 \
        --refill_buffers --output=/dev/null
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URI="nbd://127.0.0.1:$PORT/bench"
SERVER_PID=""

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap stop_server EXIT INT TERM

QEMU_AIO=io_uring
start_server() {
    case "$1" in
        folio)
            "$FOLIO" serve "$IMG" --listen "127.0.0.1:$PORT" --export-name bench --budget 2GiB \
                2>"$DIR/folio.log" &
            SERVER_PID=$! ;;
        qemu-nbd)
            qemu-nbd -f raw -b 127.0.0.1 -p "$PORT" -x bench -t --shared=32 \
                --cache=writeback --aio=$QEMU_AIO "$IMG" 2>"$DIR/qemu-nbd.log" &
            SERVER_PID=$! ;;
        nbdkit)
            local filter=()
            if nbdkit --filter=cache null --dump-plugin >/dev/null 2>&1; then filter=(--filter=cache); fi
            nbdkit -f -i 127.0.0.1 -p "$PORT" -e bench "${filter[@]}" file "$IMG" \
                2>"$DIR/nbdkit.log" &
            SERVER_PID=$! ;;
    esac
    for _ in $(seq 100); do
        if nbdinfo --size "$URI" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "server $1 did not start" >&2
    return 1
}

# fio job: name rw bs depth; prints "iops MiB/s"
run_fio() {
    local rw=$2 bs=$3 depth=$4
    fio --name="$1" --ioengine=nbd --uri="$URI" --rw="$rw" --bs="$bs" --iodepth="$depth" \
        --size="$SIZE" --time_based --runtime="$RUNTIME" --randrepeat=0 \
        --output-format=json --output="$DIR/fio.json" >/dev/null
    python3 - "$DIR/fio.json" "$rw" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
side = j["write"] if "write" in sys.argv[2] else j["read"]
print(f'{side["iops"]:.0f} {side["bw"] / 1024:.1f}')
PY
}

warm_pass() {
    fio --name=warm --ioengine=nbd --uri="$URI" --rw=read --bs=1M --iodepth=8 --size="$SIZE" \
        --output=/dev/null >/dev/null
}

drop_caches() {
    sync
    if [ "$DROP" = 1 ] && [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}

# Check qemu-nbd's io_uring once; fall back to threads.
start_server qemu-nbd || { QEMU_AIO=threads; echo "qemu-nbd: io_uring failed, using --aio=threads" >&2; start_server qemu-nbd; }
stop_server

WORKLOADS=("randread 4k 16" "randwrite 4k 16" "read 1M 4")
for run in $(seq "$RUNS"); do
    for server in folio qemu-nbd nbdkit; do
        for wl in "${WORKLOADS[@]}"; do
            read -r rw bs depth <<<"$wl"
            drop_caches
            start_server "$server"
            cold=$(run_fio cold "$rw" "$bs" "$depth")
            warm_pass
            warm=$(run_fio warm "$rw" "$bs" "$depth")
            stop_server
            printf '%s\t%s\t%s %s\tcold\t%s\n' "$run" "$server" "$rw" "$bs" "$cold" >>"$RES"
            printf '%s\t%s\t%s %s\twarm\t%s\n' "$run" "$server" "$rw" "$bs" "$warm" >>"$RES"
            echo "run $run $server $rw $bs: cold $cold, warm $warm (IOPS MiB/s)" >&2
        done
    done
done

python3 - "$RES" "$QEMU_AIO" <<'PY'
import sys, statistics
from collections import defaultdict
cells = defaultdict(list)
for line in open(sys.argv[1]):
    run, server, wl, temp, vals = line.rstrip("\n").split("\t")
    iops, mib = map(float, vals.split())
    cells[(wl, temp, server)].append((iops, mib))
def med(xs, i):
    return statistics.median(x[i] for x in xs)
print(f"medians of {max(len(v) for v in cells.values())} runs; qemu-nbd --aio={sys.argv[2]}")
print(f"{'workload':<22}{'state':<6}{'folio':>12}{'qemu-nbd':>12}{'nbdkit':>12}{'folio/qemu':>12}{'folio/nbdkit':>14}")
for wl in ["randread 4k", "randwrite 4k", "read 1M"]:
    for temp in ["cold", "warm"]:
        unit = 1 if wl.startswith("read 1M") else 0
        v = {s: med(cells[(wl, temp, s)], unit) for s in ["folio", "qemu-nbd", "nbdkit"] if cells[(wl, temp, s)]}
        if len(v) < 3:
            continue
        label = "MiB/s" if unit else "IOPS"
        print(f"{wl + ' ' + label:<22}{temp:<6}{v['folio']:>12.0f}{v['qemu-nbd']:>12.0f}{v['nbdkit']:>12.0f}"
              f"{v['folio'] / v['qemu-nbd']:>12.2f}{v['folio'] / v['nbdkit']:>14.2f}")
PY
if [ "$AUTO" = 1 ]; then rm -f "$IMG"; fi
echo "raw results: $RES" >&2
