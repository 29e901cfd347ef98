#!/usr/bin/env bash
# Eviction-policy benchmarks of issue 16, for a quiet machine. Each invocation (INVOCATIONS of
# them, default 5, the verdict rule's minimum) appends one JSON line to bench/results/policy.jsonl
# (the results schema of bench/README.md: every run of every contender, raw) with:
#
# 1. Hits: `folio bench --hot` with the new default policy (NEW) and with the previous default
#    (OLD, s3fifo25), same image, same protocol, one after the other in the same invocation, in
#    the order new-old on odd invocations and old-new on even ones, so that drift and order reach
#    both alike. Contenders: folio's own hit paths only (read_at 4 KiB, read_at 64 B, guards);
#    the other caches do not depend on the policy. A row per (hit path, threads, policy); each
#    --hot records the policy its cache ran, and the two must differ.
# 2. Replay: page accesses per second of thread CPU time of the default (and, for context, the
#    libCacheSim W-TinyLFU and LIRS) in `folio sim`'s simulator, on each trace of
#    testdata/traces at 10% of its distinct keys (crates/folio/examples/replay_rate.rs): the
#    median of 3 samples, each of whole replays of about REPLAY_ACCESSES accesses (so that a
#    sample spans many 10 ms ticks of the CPU clock, even on the 30,241-access multi3).
#
# The targets (bench/targets.toml, fixed before the runs; bench/report.py gives the verdicts): for
# the hit path, the median over >= 5 invocations of the per-invocation ratio new/old >= 0.97 (no
# slowdown beyond noise); for the replay, the median over >= 5 invocations of the default's
# figure >= 10 M accesses per CPU second on every trace. Otherwise: missed.
#
# Settings (environment): INVOCATIONS (5), RUNS (5: runs per contender inside one --hot),
# THREADS (2), SIZE (256MiB), REPLAY_ACCESSES (10000000), NEW (default), OLD (s3fifo25),
# FOLIO and REPLAY (default: target/release/folio and target/release/examples/replay_rate, built
# from this checkout first), OUT, SMOKE (0; 1 marks the lines as smoke runs, left out of every
# verdict).
# Smoke run: INVOCATIONS=1 RUNS=1 SIZE=32MiB REPLAY_ACCESSES=1000000 SMOKE=1 OUT=/tmp/p.jsonl \
#            bench/run-policy.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
INVOCATIONS=${INVOCATIONS:-5}
RUNS=${RUNS:-5}
THREADS=${THREADS:-2}
SIZE=${SIZE:-256MiB}
REPLAY_ACCESSES=${REPLAY_ACCESSES:-10000000}
BUILD=0
[ -z "${FOLIO:-}" ] && [ -z "${REPLAY:-}" ] && BUILD=1
FOLIO=${FOLIO:-$ROOT/target/release/folio}
REPLAY=${REPLAY:-$ROOT/target/release/examples/replay_rate}
OUT=${OUT:-$ROOT/bench/results/policy.jsonl}
NEW=${NEW:-default}
OLD=${OLD:-s3fifo25}
SMOKE=${SMOKE:-0}

# The lines record the checkout's commit: unless the binaries are given, build them from it (a
# no-op when they are up to date), never run a stale build.
if [ "$BUILD" = 1 ]; then
  echo "run-policy: building folio and the replay_rate example (release)" >&2
  # Two builds: target flags (--example) apply to every package given, which would build no binary.
  (cd "$ROOT" && cargo build --release -p folio-cli >&2 \
    && cargo build --release -p folio --example replay_rate >&2)
fi
for tool in python3 "$FOLIO" "$REPLAY"; do
  command -v "$tool" >/dev/null || { echo "run-policy: $tool is missing" >&2; exit 1; }
done
mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
image="$work/hot.img"

# Each trace with its number of accesses (testdata/traces/README.md), for the replays per sample.
T="$ROOT/testdata/traces"
traces=("$T/cloudphysics/cloudPhysicsIO.csv.zst:1141869" "$T/arc_oltp/OLTP.lis.zst:914145"
  "$T/arc_p6/P6.lis.zst:12672123" "$T/cloudphysics_w106/w106.trace.xz:5292456"
  "$T/lirs_multi3/multi3.trace.gz:30241")

started=$(date +%s)
for i in $(seq 1 "$INVOCATIONS"); do
  rm -f "$work"/hot-*.json "$work"/replay-*.txt
  order=("$NEW" "$OLD")
  [ $((i % 2)) = 0 ] && order=("$OLD" "$NEW")
  for p in "${order[@]}"; do
    echo "run-policy: invocation $i/$INVOCATIONS, --hot with policy $p ($(( $(date +%s) - started )) s so far)" >&2
    # --results none: these --hot lines are not the hot benchmark's (only folio's contenders,
    # another policy); this script writes its own line.
    "$FOLIO" bench --hot --image "$image" --size "$SIZE" --threads "$THREADS" --runs "$RUNS" \
      --policy "$p" --contenders folio_read_at_4k,folio_read_at_64b,folio_guard_64b,folio_slice_64b \
      --results none --json >"$work/hot-$p.json"
  done
  for entry in "${traces[@]}"; do
    t=${entry%:*} accesses=${entry##*:}
    reps=$(( (REPLAY_ACCESSES + accesses - 1) / accesses ))
    echo "run-policy: invocation $i/$INVOCATIONS, replay $(basename "$t") ($reps replays per sample)" >&2
    REPLAY_REPS=$reps "$REPLAY" "$t" - "$NEW,wtinylfu-lcs,lirs" >"$work/replay-$(basename "$t").txt"
  done
  python3 - "$ROOT" "$work" "$OUT" "$i" "$RUNS" "$THREADS" "$SIZE" "$NEW" "$OLD" "$REPLAY_ACCESSES" \
    "$SMOKE" <<'PY'
import datetime, glob, json, os, platform, subprocess, sys
root, work, out, invocation, runs, threads, size, new, old, replay_accesses, smoke = sys.argv[1:12]
def sh(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True, cwd=root).stdout.strip()
    except OSError:
        return ""
cpu = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip(); break
rows, resolved = [], {}
for p in (new, old):
    doc = json.load(open(os.path.join(work, f"hot-{p}.json")))
    resolved[p] = doc.get("policy")
    for r in doc["results"]:
        if not [v for v in r.get("runs_ops_per_sec") or [] if v is not None]:
            continue  # a contender that did not run
        t = r.get("threads", 1)
        rows.append({"workload": f"hot {r['contender']}, {t} thread{'' if t == 1 else 's'}",
                     "contender": f"folio policy={p}", "unit": "ops/s", "higher_is_better": True,
                     "runs": r["runs_ops_per_sec"],
                     "extra": {"policy": doc.get("policy"),
                               "runs_ops_per_cpu_sec": r.get("runs_ops_per_cpu_sec")}})
if not resolved[new] or resolved[new] == resolved[old]:
    sys.exit(f"run-policy: the caches ran {resolved}: nothing to compare")
replayed = [new, "wtinylfu-lcs", "lirs"]
for path in sorted(glob.glob(os.path.join(work, "replay-*.txt"))):
    trace = os.path.basename(path)[len("replay-"):-len(".txt")]
    # One line per policy, in the order asked: "<name> <wall Macc/s> <cpu Macc/s>".
    lines = [l.split() for l in open(path)]
    lines = [f for f in lines if len(f) == 3 and f[0] != "policy"]
    if len(lines) != len(replayed):
        sys.exit(f"run-policy: {path}: expected {len(replayed)} policies, got {lines}")
    for asked, (name, wall, cpu_rate) in zip(replayed, lines):
        rows.append({"workload": f"replay {trace} at 10%", "contender": f"folio policy={asked}",
                     "unit": "M accesses/CPU s", "higher_is_better": True,
                     "runs": [float(cpu_rate)],
                     "extra": {"policy": name, "wall_m_accesses_per_s": float(wall)}})
doc = {"bench": "policy", "commit": sh("git", "rev-parse", "HEAD") or "unknown",
       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "machine": {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release()},
       "params": {"invocation": int(invocation), "runs": int(runs), "threads": int(threads),
                  "image": size, "new": new, "old": old, "policies": resolved,
                  "replay_accesses_per_sample": int(replay_accesses), "smoke": smoke == "1"},
       "rows": rows}
with open(out, "a") as f:
    f.write(json.dumps(doc) + "\n")
from statistics import median as med
for r in rows:
    if r["contender"] == f"folio policy={new}":
        o = next((x for x in rows if x["workload"] == r["workload"]
                  and x["contender"] == f"folio policy={old}"), None)
        ratio = f"  new/old {med(r['runs']) / med(o['runs']):.3f}" if o else ""
        print(f"{r['workload']:<44} {med(r['runs']):>14.4g} {r['unit']}{ratio}", file=sys.stderr)
print(f"run-policy: appended to {out}", file=sys.stderr)
PY
done
echo "run-policy: $INVOCATIONS invocation(s) in $(( $(date +%s) - started )) s" >&2
