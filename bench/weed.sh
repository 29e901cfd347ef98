# Sourced by bench/run-s3.sh and bench/store-ceiling.sh: starts one SeaweedFS (master, volume,
# filer, S3 gateway) on free loopback ports under "$work/weed", with bucket "$BUCKET" created.
# Needs: $work, $BUCKET, and a `pids` array (the server's process group is appended, for the
# caller's cleanup to kill). Sets: S3 (endpoint URL), METRICS (Prometheus URL), and the AWS
# credentials SeaweedFS accepts when it has no identities.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=(); for _ in 1 2 3 4 5 6 7 8 9; do P+=("$(port)"); done
S3="http://127.0.0.1:${P[6]}"
METRICS="http://127.0.0.1:${P[8]}/metrics"
mkdir -p "$work/weed"
setsid weed server -dir="$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3 \
  -master.port="${P[0]}" -master.port.grpc="${P[1]}" -volume.port="${P[2]}" \
  -volume.port.grpc="${P[3]}" -filer.port="${P[4]}" -filer.port.grpc="${P[5]}" \
  -s3.port="${P[6]}" -s3.port.grpc="${P[7]}" -metricsPort="${P[8]}" -s3.port.iceberg=0 \
  -s3.port.lance=0 -master.telemetry=false -volume.max=64 -master.volumeSizeLimitMB=256 \
  >"$work/weed.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 240); do # bounded: at most 2 minutes
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$S3/$BUCKET" || true)
  [ "$code" = 200 ] || [ "$code" = 409 ] && \
    [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary x "$S3/$BUCKET/probe")" = 200 ] && break
  sleep 0.5
done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
