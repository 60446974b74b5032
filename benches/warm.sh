#!/usr/bin/env bash
# Unchanged re-runs of several builds, alternating, each from a fresh copy
# of one archive (issue 12): the median wall and CPU time and the largest
# peak RSS of each build. Alternating runs in one set is what makes builds
# comparable on a machine whose speed drifts.
#
# By hand, with a site served by `SCALE_SERVE=N benches/scale.sh` (it
# prints the URL and the configuration) and an archive of one cold run of it
# (and of one warm run after it, to measure re-runs that settle images by
# page group, as every re-run after the first does):
#   benches/warm.sh URL CONFIG ARCHIVE ROUNDS BINARY...
set -euo pipefail
[ $# -ge 5 ] || { sed -n 2,9p "$0" >&2; exit 2; }
url=$1 config=$2 archive=$3 rounds=$4
shift 4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for _ in $(seq "$rounds"); do
  for bin in "$@"; do
    rm -rf "$work/a"
    cp -a "$archive" "$work/a"
    sync
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" \
      env -u KURA_ARCHIVE KURA_CONFIG="$config" "$bin" --archive "$work/a" archive "$url" >/dev/null 2>"$work/stderr" \
      || { cat "$work/stderr" >&2; exit 1; }
    echo "$bin $(cat "$work/time")" >> "$work/runs"
  done
done
python3 - "$work/runs" "$@" <<'PY'
import statistics, sys
runs = [l.split() for l in open(sys.argv[1])]
print("| build | wall | CPU | peak RSS | runs |")
print("|---|---|---|---|---|")
for b in sys.argv[2:]:
    r = [x for x in runs if x[0] == b]
    wall = statistics.median(float(x[1]) for x in r)
    cpu = statistics.median(float(x[2]) + float(x[3]) for x in r)
    print(f"| {b} | {wall:.2f} s | {cpu:.2f} s | {max(int(x[4]) for x in r) // 1024} MB | {len(r)} |")
PY
