#!/usr/bin/env bash
# Eviction-policy benchmarks of issue 16, for a quiet machine:
#
# 1. Hits: `folio bench --hot` with the default policy against the previous default (s3fifo25),
#    same image, same protocol, alternating invocations (new, old, new, old, ...) so drift hits
#    both alike. Contenders: folio's own hit paths only (read_at 4 KiB, read_at 64 B, guards);
#    the other caches do not depend on the policy. Row per (contender, threads, policy).
# 2. Replay: page accesses per second of thread CPU time of the default (and, for context, the
#    libCacheSim W-TinyLFU and LIRS) in `folio sim`'s simulator, on each trace of
#    testdata/traces at 10% of its distinct keys (crates/folio/examples/replay_rate.rs).
#
# Appends one JSON line per invocation of this script to bench/results/policy.jsonl, in the
# results schema of the developers' brief: every run of every contender, raw. The verdict rule,
# fixed before the runs: for the hit path, the median over >= 5 invocations of the per-invocation
# ratio new/old >= 0.97 (no slowdown beyond noise); for the replay, the median of the default's
# runs >= 10 M accesses per CPU second on every trace. Otherwise: missed.
#
# Settings (environment): INVOCATIONS (5: pairs of new/old --hot runs), RUNS (5: runs per
# contender inside one --hot), THREADS (2), SIZE (256MiB), FOLIO (target/release/folio),
# REPLAY (target/release/examples/replay_rate), OUT.
# Smoke run: INVOCATIONS=1 RUNS=1 SIZE=32MiB bench/run-policy.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
INVOCATIONS=${INVOCATIONS:-5}
RUNS=${RUNS:-5}
THREADS=${THREADS:-2}
SIZE=${SIZE:-256MiB}
FOLIO=${FOLIO:-$ROOT/target/release/folio}
REPLAY=${REPLAY:-$ROOT/target/release/examples/replay_rate}
OUT=${OUT:-$ROOT/bench/results/policy.jsonl}
NEW=${NEW:-default}
OLD=${OLD:-s3fifo25}

if [ ! -x "$FOLIO" ] || [ ! -x "$REPLAY" ]; then
  echo "run-policy: building folio and the replay_rate example (release)" >&2
  (cd "$ROOT" && cargo build --release -p folio-cli -p folio --example replay_rate >&2)
fi
for tool in python3 "$FOLIO" "$REPLAY"; do
  command -v "$tool" >/dev/null || { echo "run-policy: $tool is missing" >&2; exit 1; }
done
mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
image="$work/hot.img"

for i in $(seq 1 "$INVOCATIONS"); do
  for p in "$NEW" "$OLD"; do
    echo "run-policy: --hot invocation $i, policy $p" >&2
    "$FOLIO" bench --hot --image "$image" --size "$SIZE" --threads "$THREADS" --runs "$RUNS" \
      --policy "$p" --contenders folio_read_at_4k,folio_read_at_64b,folio_guard_64b,folio_slice_64b \
      --json >"$work/hot-$p-$i.json"
  done
done

T="$ROOT/testdata/traces"
traces=("$T/cloudphysics/cloudPhysicsIO.csv.zst" "$T/arc_oltp/OLTP.lis.zst" "$T/arc_p6/P6.lis.zst"
  "$T/cloudphysics_w106/w106.trace.xz" "$T/lirs_multi3/multi3.trace.gz")
for t in "${traces[@]}"; do
  echo "run-policy: replay $(basename "$t")" >&2
  REPLAY_REPS=${REPLAY_REPS:-4} "$REPLAY" "$t" - default,wtinylfu-lcs,lirs >"$work/replay-$(basename "$t").txt"
done

python3 - "$work" "$OUT" "$INVOCATIONS" "$RUNS" "$THREADS" "$SIZE" "$NEW" "$OLD" <<'PY'
import glob, json, os, platform, subprocess, sys, datetime
work, out, invocations, runs, threads, size, new, old = sys.argv[1:9]
root = os.path.dirname(os.path.dirname(os.path.abspath(out)))
def sh(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True, cwd=root).stdout.strip()
    except OSError:
        return ""
cpu = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip(); break
rows = {}
for p in (new, old):
    for i in range(1, int(invocations) + 1):
        path = os.path.join(work, f"hot-{p}-{i}.json")
        try:
            doc = json.load(open(path))
        except (OSError, ValueError) as e:
            print(f"run-policy: unreadable {path}: {e}", file=sys.stderr); continue
        for r in doc.get("results", []):
            if not [v for v in r.get("runs_ops_per_sec") or [] if v is not None]:
                continue  # a contender that did not run in this invocation
            key = (r["contender"], r.get("threads", 1), p)
            row = rows.setdefault(key, {"workload": f"hot {r['contender']} {r.get('threads', 1)} threads",
                "contender": f"folio policy={p}", "unit": "ops/s", "higher_is_better": True,
                "runs": [], "extra": {"invocation_medians": [], "cpu_runs": []}})
            row["runs"] += r.get("runs_ops_per_sec", [])
            row["extra"]["cpu_runs"] += r.get("runs_ops_per_cpu_sec", [])
            row["extra"]["invocation_medians"].append(r.get("ops_per_sec"))
for path in sorted(glob.glob(os.path.join(work, "replay-*.txt"))):
    trace = os.path.basename(path)[len("replay-"):-len(".txt")]
    for line in open(path):
        f = line.split()
        if len(f) == 3 and f[0] not in ("policy",):
            try:
                wall, cpu_rate = float(f[1]), float(f[2])
            except ValueError:
                continue
            rows[("replay", trace, f[0])] = {"workload": f"replay {trace} at 10%", "contender": f[0],
                "unit": "M accesses/CPU s", "higher_is_better": True, "runs": [cpu_rate],
                "extra": {"wall_m_accesses_per_s": wall}}
doc = {"bench": "policy", "commit": sh("git", "rev-parse", "HEAD"),
       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "machine": {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release()},
       "params": {"invocations": int(invocations), "runs": int(runs), "threads": int(threads),
                  "image": size, "new": new, "old": old},
       "rows": list(rows.values())}
with open(out, "a") as f:
    f.write(json.dumps(doc) + "\n")
# Summary: per contender, the median over invocations of new/old.
import statistics
for (c, t, p), row in sorted(rows.items(), key=lambda kv: str(kv[0])):
    if c == "replay" or p != new:
        continue
    o = rows.get((c, t, old))
    if not o:
        continue
    ratios = [a / b for a, b in zip(row["extra"]["invocation_medians"], o["extra"]["invocation_medians"]) if a and b]
    if ratios:
        print(f"{c} {t} threads: new/old median {statistics.median(ratios):.3f} over {len(ratios)} invocations")
for key, row in rows.items():
    if key[0] == "replay":
        print(f"replay {key[1]} {key[2]}: {row['runs'][0]:.1f} M accesses per CPU second")
print(f"appended to {out}")
PY
