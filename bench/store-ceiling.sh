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
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=(); for _ in 1 2 3 4 5 6 7 8 9; do P+=("$(port)"); done
S3="http://127.0.0.1:${P[6]}"; BUCKET=ceiling
mkdir -p "$work/weed"
setsid weed server -dir="$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3 \
  -master.port="${P[0]}" -master.port.grpc="${P[1]}" -volume.port="${P[2]}" \
  -volume.port.grpc="${P[3]}" -filer.port="${P[4]}" -filer.port.grpc="${P[5]}" \
  -s3.port="${P[6]}" -s3.port.grpc="${P[7]}" -metricsPort="${P[8]}" -s3.port.iceberg=0 \
  -s3.port.lance=0 -master.telemetry=false -volume.max=64 -master.volumeSizeLimitMB=256 \
  >"$work/weed.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 240); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$S3/$BUCKET" || true)
  [ "$code" = 200 ] || [ "$code" = 409 ] && \
    [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary x "$S3/$BUCKET/probe")" = 200 ] && break
  sleep 0.5
done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
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
