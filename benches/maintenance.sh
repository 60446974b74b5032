#!/usr/bin/env bash
# Memory of the commands that walk a whole archive (issue 12: nothing grows
# with the archive): `kura stats`, `kura prune --dry-run`, `kura prune`,
# a prune that repacks every pack (`--repack-below 1.01`), and `kura cat`
# of one image and `kura restore` of the snapshot after that repack (every
# manifest hint stale). The archive
# is one cold run over the scale benchmark's site (benches/scale.sh: N
# pages x 20 small images); each command runs on a fresh copy of it, the
# two binaries alternating, ROUNDS times. Peak RSS and wall per run.
#
# By hand: benches/maintenance.sh N ROUNDS [KURA_BINARY [BASELINE_BINARY]]
# Needs nginx (apt-get install nginx-light). Results go to benches/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
rounds=${2:-2}
shift 2 || true
. benches/binaries.sh

# The scale benchmark serves the site until it is killed.
SCALE_SERVE=$n setsid benches/scale.sh >"$work/serve.log" 2>&1 &
server=$!
trap 'kill -- -"$server" 2>/dev/null; rm -rf "$work"' EXIT
until grep -q '^serving' "$work/serve.log"; do
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 1
done
read -r _ url _ config < <(sed -n 's/^serving \(.*\) (configuration: \(.*\))$/serving \1 x \2/p' "$work/serve.log")
site=${url%/sitemap.xml}
k=(env -u KURA_ARCHIVE KURA_CONFIG="$config")

measure() {
  /usr/bin/time -f "%M %e" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; return 1; }
  read -r kb secs < "$work/time"
  echo "$((kb / 1024)) $secs"
}

"${k[@]}" "$new" --archive "$work/a0" archive "$url" >/dev/null 2>&1
# The same archive with every pack repacked: hints name packs that are gone.
cp -a "$work/a0" "$work/moved"
"${k[@]}" "$new" --archive "$work/moved" prune --repack-below 1.01 >/dev/null 2>&1

bins="new"
if [ -n "$base" ]; then bins="base new"; fi
echo "| round | binary | command | peak RSS MB | wall s |"
echo "|---|---|---|---|---|"
for round in $(seq "$rounds"); do
  for cmd in "stats" "prune --dry-run" "prune" "prune --repack-below 1.01" "cat latest $site/img/$((n / 2))/7.gif" \
    "restore latest $work/restored --layout raw"; do
    for b in $bins; do
      bin=${!b}
      if [[ $cmd == cat* || $cmd == restore* ]]; then
        a="$work/moved"
        rm -rf "$work/restored"
      else
        rm -rf "$work/x" && cp -a "$work/a0" "$work/x"
        a="$work/x"
      fi
      # shellcheck disable=SC2086
      read -r mb secs < <(measure "${k[@]}" "$bin" --archive "$a" $cmd)
      echo "| $round | $b | ${cmd%% [/h]*} | $mb | $secs |"
    done
  done
done
