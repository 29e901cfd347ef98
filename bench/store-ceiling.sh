#!/usr/bin/env bash
# The store's own GET ceiling on this machine: a 1 GiB image of 1 MiB chunks imported by folio,
# then every chunk GET with curl, N at a time (no cache, no NBD): the most any contender's cold
# sequential read can reach through this SeaweedFS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FOLIO=${FOLIO:-$ROOT/target/release/folio}
[ -x "$FOLIO" ] || (cd "$ROOT" && cargo build --release -p folio-cli >&2)
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 -- "-$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
BUCKET=ceiling
# shellcheck source=bench/weed.sh
source "$ROOT/bench/weed.sh"
head -c $((1024 << 20)) /dev/urandom >"$work/src.raw"
"$FOLIO" image import "$work/src.raw" "s3://$BUCKET/img" --endpoint "$S3" --chunk-size 1MiB 2>/dev/null
rm "$work/src.raw"
python3 - "$S3" "$BUCKET" >"$work/urls" <<'PY'
import sys, urllib.request, re
s3, b = sys.argv[1], sys.argv[2]
keys, token = [], None
while True:
    q = f"{s3}/{b}?list-type=2&prefix=img/&max-keys=1000" + (f"&continuation-token={urllib.request.quote(token)}" if token else "")
    x = urllib.request.urlopen(q).read().decode()
    keys += re.findall(r"<Key>([^<]+)</Key>", x)
    m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", x)
    if not m: break
    token = m.group(1)
for k in keys:
    print(f"url = \"{s3}/{b}/{k}\"\noutput = \"/dev/null\"")
PY
n=$(grep -c '^url' "$work/urls")
for par in 1 4 16; do
  t0=$(date +%s.%N)
  curl -s -Z --parallel-max "$par" -K "$work/urls"
  t1=$(date +%s.%N)
  python3 -c "import sys; n,t0,t1,par=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]),sys.argv[4]; print(f'store ceiling: {n} objects (~{n} MiB) GET {par} at a time: {n/(t1-t0):.0f} MiB/s')" "$n" "$t0" "$t1" "$par"
done
