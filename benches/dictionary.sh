#!/usr/bin/env bash
# zstd dictionaries against per-document zstd, in one run (by hand, not CI):
#
#   benches/dictionary.sh [N] [KURA]
#
# N (default 1000) articles of the built-in sample site (`kura site`) on loopback,
# archived cold by KURA (default: a release build of this checkout) twice, with
# `[store] dictionaries = false` (the baseline) and `= true`. Reports wall time, the
# archive's bytes (packs + dictionaries), the bytes documents (articles, feeds) occupy
# in packs, the solid floor (the same documents concatenated and compressed by zstd -3
# as one stream) and, if restic is installed, restic's repository of the restored tree.
# Then `kura prune --recompress` on a copy of the dictionaries archive (JPEGs re-coded
# losslessly with Lepton): its wall time, the archive's bytes after it, and a
# `verify --read-data` of the result.
# Writes benches/results/<date>-dictionary-<N>-articles-<cores>c.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
n=${1:-1000}
kura=${2:-}
if [ -z "$kura" ]; then
    cargo build --release --quiet
    kura=$root/target/release/kura
fi
command -v zstd >/dev/null || { echo "needs the zstd command (apt-get install zstd)" >&2; exit 2; }

work=$(mktemp -d /tmp/kura-dict.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$kura" site --articles "$n" --feed-items 50 >"$work/site.urls" 2>"$work/site.err" &
pids+=($!)
for _ in $(seq 600); do grep -q '^sitemap ' "$work/site.urls" 2>/dev/null && break; sleep 0.1; done
sitemap=$(awk '$1 == "sitemap" { print $2 }' "$work/site.urls")
args=(archive --allow-private --per-host-interval-ms 0 "$sitemap")
# The site encodes its images on first request: one untimed run warms it.
"$kura" --archive "$work/warmup" "${args[@]}" >/dev/null 2>&1 || true
rm -rf "$work/warmup"

# Each mode runs twice, in the order A B B A, each after `sync` (a run must not pay
# for the previous one's writeback); the wall time is the mean of the two.
declare -A walls
for mode in false true true false; do
    printf '[store]\ndictionaries = %s\n' "$mode" >"$work/$mode.toml"
    rm -rf "$work/a-$mode"
    sync
    s=$(date +%s.%N)
    "$kura" --config "$work/$mode.toml" --archive "$work/a-$mode" "${args[@]}" >"$work/$mode.out" 2>"$work/$mode.err" \
        || { echo "kura ($mode) failed:" >&2; tail -5 "$work/$mode.err" >&2; exit 1; }
    e=$(date +%s.%N)
    walls[$mode]="${walls[$mode]:-} $(echo "$e - $s" | bc)"
done
for mode in false true; do
    printf -v "wall_$mode" '%.2f' "$(echo "${walls[$mode]}" | awk '{ print ($1 + $2) / 2 }')"
    printf -v "walls_$mode" '%s' "$(echo "${walls[$mode]}" | awk '{ printf "%.2f, %.2f", $1, $2 }')"
    "$kura" --archive "$work/a-$mode" stats --json >"$work/$mode.stats"
    bytes=$(du -sb "$work/a-$mode/packs" | cut -f1)
    [ -d "$work/a-$mode/dictionaries" ] && bytes=$((bytes + $(du -sb "$work/a-$mode/dictionaries" | cut -f1)))
    printf -v "bytes_$mode" '%s' "$bytes"
done

# Documents: what articles and feeds occupy in packs (dictionaries counted once), and
# the floor: all of them as one zstd -3 stream.
docs() { python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
k = s["kinds"]
print(sum(k.get(x, {}).get(sys.argv[2], 0) for x in ("article", "feed", "page")) + (s["dictionary_bytes"] if sys.argv[2] == "stored_bytes" else 0))' "$@"; }
docs_raw=$(docs "$work/true.stats" unique_bytes)
docs_false=$(docs "$work/false.stats" stored_bytes)
docs_true=$(docs "$work/true.stats" stored_bytes)
"$kura" --archive "$work/a-true" restore latest "$work/restored" --layout raw >/dev/null 2>&1
"$kura" --archive "$work/a-true" ls latest --json | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e.get("kind") in ("article", "feed", "page") and e.get("blob"):
        print(e["url"])' >"$work/doc-urls"
while read -r url; do "$kura" --archive "$work/a-true" cat latest "$url"; done <"$work/doc-urls" >"$work/docs.cat"
solid=$(zstd -3 -q -c "$work/docs.cat" | wc -c)
cat_bytes=$(wc -c <"$work/docs.cat")

restic_bytes=-
if command -v restic >/dev/null; then
    export RESTIC_PASSWORD=bench
    restic init --repo "$work/restic" -q >/dev/null 2>&1
    restic backup --repo "$work/restic" -q "$work/restored" >/dev/null 2>&1
    restic_bytes=$(du -sb "$work/restic" | cut -f1)
fi

# JPEGs re-coded losslessly by prune, on a copy; the result verified.
cp -a "$work/a-true" "$work/a-lepton"
sync
s=$(date +%s.%N)
"$kura" --archive "$work/a-lepton" prune --recompress --json >"$work/lepton.json"
e=$(date +%s.%N)
printf -v wall_lepton '%.2f' "$(echo "$e - $s" | bc)"
bytes_lepton=$(du -sb "$work/a-lepton/packs" | cut -f1)
[ -d "$work/a-lepton/dictionaries" ] && bytes_lepton=$((bytes_lepton + $(du -sb "$work/a-lepton/dictionaries" | cut -f1)))
"$kura" --archive "$work/a-lepton" verify --read-data >/dev/null
jpegs=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["jpegs_recompressed"], r["jpeg_bytes"], r["jpeg_bytes_stored"])' "$work/lepton.json")
read -r jpeg_n jpeg_raw jpeg_stored <<<"$jpegs"

ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.3f}x' if b else '-')" "$1" "$2"; }
mb() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e6:.2f} MB')" "$1"; }
cores=$(nproc)
out=benches/results/$(date +%F)-dictionary-$n-articles-${cores}c.md
{
    echo "# zstd dictionaries, $n articles ($(date -u +%FT%TZ), $cores cores, $(git rev-parse --short HEAD))"
    echo
    echo "| | per-document zstd (baseline) | dictionaries | ratio |"
    echo "|---|---|---|---|"
    echo "| cold archive wall (mean of 2: A B B A) | ${wall_false} s (${walls_false}) | ${wall_true} s (${walls_true}) | $(ratio "$wall_true" "$wall_false") |"
    echo "| archive (packs + dictionaries) | $(mb "$bytes_false") | $(mb "$bytes_true") | $(ratio "$bytes_true" "$bytes_false") |"
    echo "| documents in packs (articles, feeds) | $(mb "$docs_false") | $(mb "$docs_true") | $(ratio "$docs_true" "$docs_false") |"
    echo
    echo "Documents: $(mb "$docs_raw") raw (unique); as one zstd -3 stream (the solid floor): $(mb "$solid")"
    echo "(from $(mb "$cat_bytes") read back with \`kura cat\`). Dictionaries are $(ratio "$docs_true" "$solid") the floor;"
    echo "per-document zstd is $(ratio "$docs_false" "$solid")."
    echo
    if [ "$restic_bytes" != - ]; then
        echo "restic repository of the restored tree (the same content): $(mb "$restic_bytes");"
        echo "Kura's archive with dictionaries is $(ratio "$bytes_true" "$restic_bytes") of it, without $(ratio "$bytes_false" "$restic_bytes")."
        echo
    fi
    echo "\`kura prune --recompress\` (JPEGs re-coded losslessly, Lepton) on a copy of the archive with"
    echo "dictionaries: ${wall_lepton} s; $jpeg_n JPEGs, $(mb "$jpeg_raw") stored as $(mb "$jpeg_stored") ($(ratio "$jpeg_stored" "$jpeg_raw"));"
    echo -n "the archive $(mb "$bytes_lepton"), $(ratio "$bytes_lepton" "$bytes_true") of it before"
    if [ "$restic_bytes" != - ]; then echo -n " and $(ratio "$bytes_lepton" "$restic_bytes") of restic's repository"; fi
    echo "; \`verify --read-data\`: no problems."
    echo
    echo "Dictionaries: $(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["dictionaries"], "files,", s["dictionary_bytes"], "bytes")' "$work/true.stats")."
    echo "Versions: $("$kura" --version 2>/dev/null || echo kura), $(zstd --version | head -1), $(restic version 2>/dev/null | head -1 || echo 'no restic')."
    echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} >"$out"
cat "$out"
