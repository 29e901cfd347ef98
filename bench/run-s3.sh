#!/usr/bin/env bash
# Object-store benchmark: `folio serve s3://...` beside s3backer (FUSE) and nbdkit's S3 plugin,
# all on one SeaweedFS started here, same image bytes, same block/chunk size, same cache budget,
# driven by fio (nbd engine for the NBD servers, the FUSE file for s3backer; the same jobs and
# the same number of requests in flight). Workloads over an image 4x the budget, per run and
# contender: on a fresh start, 4 KiB random reads cold, then warm (again, same server), then
# 4 KiB random writes with an fsync every 1,000 and one at the end (RUNTIME_S each); on a second
# fresh start, 1 MiB sequential reads of the image, each byte once (cold; at most 6 x RUNTIME_S).
# Store requests and bytes per GiB served come from SeaweedFS's own counters (its Prometheus
# metrics), so every contender is counted alike; the write cell's requests per GiB written are
# also a row of their own (lower is better), as issue 15 sets a target on them.
#
# Appends one JSON line per invocation to bench/results/s3.jsonl (schema: docs in the brief /
# README). Settings (environment): BUDGET_MIB (256), CHUNK_MIB (1), RUNTIME_S (20), RUNS (5),
# JOBS (16, requests in flight for the random workloads), CONTENDERS ("folio s3backer nbdkit"),
# FOLIO (default: target/release/folio, built from this checkout first), OUT. A contender that
# cannot run here is reported and skipped.
# Smoke run (marked, and away from bench/results): SMOKE=1 OUT=/tmp/s3.jsonl BUDGET_MIB=8 RUNTIME_S=2 \
#   RUNS=1 bench/run-s3.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUDGET_MIB=${BUDGET_MIB:-256}
IMAGE_MIB=$((4 * BUDGET_MIB))
CHUNK_MIB=${CHUNK_MIB:-1}
RUNTIME_S=${RUNTIME_S:-20}
RUNS=${RUNS:-5}
JOBS=${JOBS:-16}
CONTENDERS=${CONTENDERS:-"folio s3backer nbdkit"}
if [ -z "${FOLIO:-}" ]; then
  # The line records the checkout's commit: build folio from it (a no-op when up to date).
  (cd "$ROOT" && cargo build --release -p folio-cli >&2)
  FOLIO=$ROOT/target/release/folio
fi
OUT=${OUT:-$ROOT/bench/results/s3.jsonl}
BUCKET=folio-bench

for tool in weed fio curl python3 "$FOLIO"; do
  command -v "$tool" >/dev/null || { echo "run-s3: $tool is missing" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
mnt=""
cleanup() {
  [ -n "$mnt" ] && umount "$mnt" 2>/dev/null || true
  for p in "${pids[@]}"; do kill -9 -- "-$p" 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench/weed.sh
source "$ROOT/bench/weed.sh"

# Store counters: requests and bytes (both directions) so far.
store_counters() {
  curl -s "$METRICS" | python3 -c '
import sys
req = byt = 0.0
for line in sys.stdin:
    if line.startswith("SeaweedFS_s3_request_total{"):
        req += float(line.rsplit(" ", 1)[1])
    elif line.startswith("SeaweedFS_s3_bucket_traffic_"):
        byt += float(line.rsplit(" ", 1)[1])
print(int(req), int(byt))'
}

echo "run-s3: image ${IMAGE_MIB} MiB, budget ${BUDGET_MIB} MiB, chunk ${CHUNK_MIB} MiB ($SECONDS s after start)" >&2
head -c $((IMAGE_MIB << 20)) /dev/urandom >"$work/src.raw"
"$FOLIO" image import "$work/src.raw" "s3://$BUCKET/folio" --endpoint "$S3" \
  --chunk-size "${CHUNK_MIB}MiB" 2>/dev/null

s3backer_mount() {
  mnt="$work/mnt"; mkdir -p "$mnt"
  echo "bench:bench" >"$work/s3b-passwd"; chmod 600 "$work/s3b-passwd"
  s3backer --blockSize="${CHUNK_MIB}M" --size="${IMAGE_MIB}M" \
    --blockCacheSize=$((BUDGET_MIB / CHUNK_MIB)) --baseURL="$S3/" \
    --accessFile="$work/s3b-passwd" --prefix=s3backer/ --directIO --force \
    "$BUCKET" "$mnt" >>"$work/s3backer.log" 2>&1
}

# fio over a contender: $1 = contender, $2 = workload name, $3 = "timed" (RUNTIME_S) or
# "once" (the image once, at most 6 x RUNTIME_S), rest = fio options.
run_fio() {
  local who=$1 wl=$2 timing=$3; shift 3
  local target limit=(--time_based --runtime="$RUNTIME_S")
  [ "$timing" = once ] && limit=(--runtime=$((6 * RUNTIME_S)))
  case $who in
    folio|nbdkit) target=(--ioengine=nbd --uri="nbd://127.0.0.1:$NBD_PORT/") ;;
    s3backer) target=(--ioengine=psync --filename="$mnt/file") ;;
  esac
  read -r r0 b0 < <(store_counters)
  fio --name="$wl" "${target[@]}" --size=$((IMAGE_MIB))M "${limit[@]}" \
    --group_reporting --output-format=json --output="$work/fio.json" "$@" \
    >>"$work/fio.err" 2>&1 || {
      echo "run-s3: fio $who $wl failed: $(tail -2 "$work/fio.err")" >&2; return 0; }
  read -r r1 b1 < <(store_counters)
  python3 - "$who" "$wl" "$((r1 - r0))" "$((b1 - b0))" "$work/fio.json" >>"$work/rows.txt" \
    2>>"$work/fio.err" <<'EOF' || echo "run-s3: unreadable fio output for $who $wl" >&2
import json, sys
who, wl, reqs, byts, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
j = json.load(open(path))["jobs"][0]
side = "write" if j["write"]["io_bytes"] > j["read"]["io_bytes"] else "read"
s = j[side]
gib = max(s["io_bytes"], 1) / 2**30
pct = s["clat_ns"].get("percentile", {})
unit, value = ("MiB/s", s["bw_bytes"] / 2**20) if "1m" in wl else ("IOPS", s["iops"])
print(json.dumps({"workload": wl, "contender": who, "unit": unit, "value": value,
                  "p50_us": pct.get("50.000000", 0) / 1e3, "p99_us": pct.get("99.000000", 0) / 1e3,
                  "store_requests_per_gib": reqs / gib, "store_bytes_per_gib": byts / gib}))
EOF
}

# Starts contender $1 on the image (the first start of s3backer and nbdkit writes their own copy
# of the image through them); fails if it cannot run here. Sets pid (NBD servers) or mnt.
seeded=""
start() {
  case $1 in
    folio)
      NBD_PORT=$(port)
      setsid "$FOLIO" serve "s3://$BUCKET/folio" --endpoint "$S3" --listen "127.0.0.1:$NBD_PORT" \
        --budget "${BUDGET_MIB}MiB" --break-lease >>"$work/folio.log" 2>&1 &
      pid=$!; pids+=("$pid")
      for _ in $(seq 1 200); do nbdinfo --size "nbd://127.0.0.1:$NBD_PORT/" >/dev/null 2>&1 && return 0; sleep 0.1; done
      echo "run-s3: folio serve does not start: $(tail -2 "$work/folio.log")" >&2; return 1 ;;
    s3backer)
      command -v s3backer >/dev/null || { echo "run-s3: s3backer not installed" >&2; return 1; }
      if [[ $seeded != *s3backer* ]]; then # its own copy of the image, written through it
        s3backer_mount || { echo "run-s3: s3backer does not mount here" >&2; mnt=""; return 1; }
        dd if="$work/src.raw" of="$mnt/file" bs=1M conv=notrunc,fsync status=none
        umount "$mnt"; seeded="$seeded s3backer"
      fi
      s3backer_mount || { echo "run-s3: s3backer does not mount here" >&2; mnt=""; return 1; } ;;
    nbdkit)
      NBD_PORT=$(port)
      # One object per chunk under its own prefix (the plugin's object-size mode).
      setsid nbdkit --exit-with-parent -f -p "$NBD_PORT" -i 127.0.0.1 S3 \
        endpoint-url="$S3" bucket="$BUCKET" key=nbdkit size="${IMAGE_MIB}M" \
        object-size="${CHUNK_MIB}M" access-key=bench secret-key=bench \
        >>"$work/nbdkit.log" 2>&1 &
      pid=$!; pids+=("$pid")
      local ok=""
      for _ in $(seq 1 100); do nbdinfo --size "nbd://127.0.0.1:$NBD_PORT/" >/dev/null 2>&1 && { ok=1; break; }; sleep 0.1; done
      if [ -z "$ok" ]; then
        echo "run-s3: nbdkit's S3 plugin does not start here: $(tail -2 "$work/nbdkit.log")" >&2
        kill -9 "$pid" 2>/dev/null || true; return 1
      fi
      if [[ $seeded != *nbdkit* ]]; then
        nbdcopy "$work/src.raw" "nbd://127.0.0.1:$NBD_PORT/" 2>>"$work/nbdkit.log" || true
        seeded="$seeded nbdkit"
      fi ;;
  esac
}

stop() {
  case $1 in
    folio|nbdkit) kill -TERM "$pid"; wait "$pid" 2>/dev/null || true ;;
    s3backer) umount "$mnt"; mnt="" ;;
  esac
}

skipped=""
started=$(date +%s)
for run in $(seq 1 "$RUNS"); do
  for who in $CONTENDERS; do
    [[ $skipped == *" $who"* ]] && continue
    echo "run-s3: run $run/$RUNS, $who ($(( $(date +%s) - started )) s so far)" >&2
    start "$who" || { echo "run-s3: $who skipped" >&2; skipped="$skipped $who"; continue; }
    run_fio "$who" "rand-read-4k-cold ${JOBS}jobs" timed --rw=randread --bs=4k --numjobs="$JOBS"
    run_fio "$who" "rand-read-4k-warm ${JOBS}jobs" timed --rw=randread --bs=4k --numjobs="$JOBS"
    run_fio "$who" "rand-write-4k fsync1000 1job" timed --rw=randwrite --bs=4k --fsync=1000 \
      --end_fsync=1 --numjobs=1
    stop "$who"
    start "$who" || { echo "run-s3: $who skipped" >&2; skipped="$skipped $who"; continue; }
    run_fio "$who" "seq-read-1m-cold 1job" once --rw=read --bs=1m --numjobs=1
    stop "$who"
  done
done

mkdir -p "$(dirname "$OUT")"
python3 - "$work/rows.txt" "$ROOT" "$BUDGET_MIB" "$IMAGE_MIB" "$CHUNK_MIB" "$RUNTIME_S" "$JOBS" >>"$OUT" <<'EOF'
import json, sys, subprocess, datetime, os, platform
rows_path, root, budget, image, chunk, runtime, jobs = sys.argv[1:8]
rows = {}
for line in open(rows_path):
    r = json.loads(line)
    key = (r["workload"], r["contender"])
    row = rows.setdefault(key, {"workload": r["workload"], "contender": r["contender"], "unit": r["unit"],
                                "higher_is_better": True, "runs": [], "extra": {k: [] for k in
                                ("p50_us", "p99_us", "store_requests_per_gib", "store_bytes_per_gib")}})
    row["runs"].append(r["value"])
    for k in row["extra"]:
        row["extra"][k].append(r[k])
    if r["workload"].startswith("rand-write"):
        # Issue 15's target on requests per GiB written (lower is better): a row of its own.
        key = (r["workload"] + ", store requests per GiB written", r["contender"])
        rows.setdefault(key, {"workload": key[0], "contender": r["contender"],
                              "unit": "requests/GiB", "higher_is_better": False,
                              "runs": []})["runs"].append(r["store_requests_per_gib"])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
sha = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
print(json.dumps({"bench": "s3", "commit": sha,
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "machine": {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release()},
                  "params": {"budget_mib": int(budget), "image_mib": int(image), "chunk_mib": int(chunk),
                             "runtime_s": int(runtime), "jobs": int(jobs), "store": "seaweedfs",
                             "seq_read": "fresh start, each byte once, at most 6 x runtime_s",
                             "write_fsync": "every 1000 writes and at the end",
                             "smoke": os.environ.get("SMOKE", "0") == "1"},
                  "rows": list(rows.values())}))
EOF
echo "run-s3: appended to $OUT after $(( $(date +%s) - started )) s of runs" >&2
tail -1 "$OUT" | python3 -c '
import json, sys
for r in json.load(sys.stdin)["rows"]:
    e, runs = r.get("extra") or {}, r["runs"]
    more = ("  p99 %9.0f us  req/GiB %9.0f" % (e["p99_us"][0], e["store_requests_per_gib"][0])
            if "p99_us" in e else "")
    print("%-32s %-9s %10.1f %-6s%s" % (r["workload"], r["contender"], sum(runs) / len(runs),
                                        r["unit"], more))' >&2
