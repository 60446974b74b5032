#!/usr/bin/env bash
# A year of feeds on one machine (issue 12): N pages x 20 small unique
# images (plus one logo every page shares), listed by a sitemap index and
# served by nginx on loopback. For each N and each binary: a cold run into
# an empty archive and four warm (unchanged) re-runs, with peak RSS and
# wall time (the first alone, as it makes the page groups the others use;
# then the median of the other three), the index and manifest bytes per
# entry (amortised over the snapshots: manifest files and distinct chunks;
# a format-4 build reports no chunks, so its figure is per snapshot), what an unchanged
# re-run adds to the archive, and the latency of `kura cat` and `kura ls --url` of one image in
# the latest snapshot and of `kura snapshots`, the wall of `kura diff` of the last two, `kura restore --article` of one page (first with an
# empty cache: a format-3 manifest finds the article's entries through its
# key index, an older one is laid out first; then the median of five), and
# `kura verify`.
#
# By hand: benches/scale.sh "1000 10000" [KURA_BINARY [BASELINE_BINARY]]
# Needs nginx (apt-get install nginx-light). Results go to benches/results/.
# SCALE_SERVE=N benches/scale.sh only serves the site of N pages (for profiling).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${1:-"1000 10000"}
shift || true
. benches/binaries.sh
command -v nginx >/dev/null || { echo "needs nginx: apt-get install -y nginx-light" >&2; exit 2; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# The site: pages/<k>/<n>.html, img/<n>/<i>.gif, logo.gif, sitemap index.
make_site() {
  python3 - "$1" "$2" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(root, exist_ok=True)
def gif(tag):
    # A 1x1 GIF with a comment naming it: valid, tiny, and distinct bytes.
    c = tag.encode()
    return (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
            + b"\x21\xfe" + bytes([len(c)]) + c + b"\x00"
            + b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b")
open(f"{root}/logo.gif", "wb").write(gif("logo"))
words = "storehouse archive picture article reader link feed page image byte".split()
per_map = 40000
maps = []
for m in range(0, n, per_map):
    urls = []
    for p in range(m, min(n, m + per_map)):
        d = f"{root}/pages/{p // 1000}"
        os.makedirs(d, exist_ok=True)
        os.makedirs(f"{root}/img/{p}", exist_ok=True)
        imgs = "".join(f'<p>{words[(p + i) % 10]} {i}</p><img src="/img/{p}/{i}.gif" alt="">' for i in range(20))
        with open(f"{d}/{p}.html", "w") as f:
            f.write(f'<!doctype html><html><head><meta charset="utf-8"><title>Article {p}</title>'
                    f'<link rel="icon" href="/logo.gif"></head><body><h1>Article {p}</h1>'
                    f'<img src="/logo.gif" alt="logo">{imgs}</body></html>')
        for i in range(20):
            open(f"{root}/img/{p}/{i}.gif", "wb").write(gif(f"{p}/{i}"))
        urls.append(f"http://127.0.0.1:PORT/pages/{p // 1000}/{p}.html")
    name = f"sitemap-{m // per_map}.xml"
    with open(f"{root}/{name}", "w") as f:
        f.write('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">')
        f.write("".join(f"<url><loc>{u}</loc></url>" for u in urls))
        f.write("</urlset>")
    maps.append(name)
with open(f"{root}/sitemap.xml", "w") as f:
    f.write('<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">')
    f.write("".join(f"<sitemap><loc>http://127.0.0.1:PORT/{m}</loc></sitemap>" for m in maps))
    f.write("</sitemapindex>")
PY
  # The port is only known now; sitemaps name absolute URLs.
  sed -i "s/PORT/$port/g" "$1"/sitemap*.xml
}

start_nginx() {
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<EOF
user root;
worker_processes 2;
pid $work/nginx/pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  types { text/html html; image/gif gif; application/xml xml; }
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$port; root $1; }
}
EOF
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"
}
stop_nginx() { [ -f "$work/nginx/pid" ] && kill "$(cat "$work/nginx/pid")" 2>/dev/null; sleep 0.5; rm -f "$work/nginx/pid"; }
trap 'stop_nginx; rm -rf "$work"' EXIT

cat > "$work/kura.toml" <<EOF
[network]
concurrency = 32
per_host_concurrency = 32
per_host_interval_ms = 0
robots = false
allow_private = true
[defaults]
max_sitemap_urls = 10000000
EOF

# Peak RSS (MB) and wall (s) of one command.
measure() {
  /usr/bin/time -f "%M %e" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; return 1; }
  read -r kb secs < "$work/time"
  echo "$((kb / 1024)) $secs"
}

# Median of five timings of a command, in ms.
latency() {
  python3 - "$@" <<'PY'
import subprocess, sys, time
ts = []
for _ in range(5):
    t = time.perf_counter()
    if subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
        print("-")  # the build lacks the command
        sys.exit()
    ts.append((time.perf_counter() - t) * 1000)
print(f"{sorted(ts)[2]:.0f}")
PY
}

bench() {
  local bin=$1 name=$2 n=$3 a="$work/archive"
  rm -rf "$a"
  local k=(env -u KURA_ARCHIVE KURA_CONFIG="$work/kura.toml" "$bin" --archive "$a")
  read -r cold_rss cold_wall < <(measure "${k[@]}" archive "http://127.0.0.1:$port/sitemap.xml")
  # Warm: the first unchanged re-run (it settles images one by one and
  # keeps each page's as a group), then three more (settled by page
  # group; one is within this machine's noise): the median wall and the
  # largest peak.
  local walls=() rsses=() rss wall first_wall
  read -r rss first_wall < <(measure "${k[@]}" archive "http://127.0.0.1:$port/sitemap.xml")
  rsses+=("$rss")
  local before after grows=()
  for _ in 1 2 3; do
    before=$(du -sb --exclude=index "$a" | cut -f1)
    read -r rss wall < <(measure "${k[@]}" archive "http://127.0.0.1:$port/sitemap.xml")
    after=$(du -sb --exclude=index "$a" | cut -f1)
    walls+=("$wall") rsses+=("$rss") grows+=("$((after - before))")
  done
  # What an unchanged re-run adds to the archive (packs, manifest, index
  # files; not the cache): format 5 stores only the manifest chunks that
  # changed.
  local grow
  grow=$(printf '%s\n' "${grows[@]}" | sort -g | sed -n 2p)
  warm_wall=$(printf '%s\n' "${walls[@]}" | sort -g | sed -n 2p)
  warm_rss=$(printf '%s\n' "${rsses[@]}" | sort -g | tail -1)
  local entries index manifests img cat ls snaps_ms diff_s diff_rss
  entries=$("${k[@]}" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["entries"])')
  index=$(du -sb "$a/index" | cut -f1)
  # Manifest files, and (format 5) the distinct chunk blobs they list,
  # amortised over the snapshots.
  local chunks snaps
  chunks=$("${k[@]}" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("manifest_chunk_bytes", 0))')
  snaps=$(find "$a/snapshots" -type f | wc -l)
  manifests=$(( ($(du -sb "$a/snapshots" | cut -f1) + chunks) / snaps ))
  img="http://127.0.0.1:$port/img/$((n / 2))/7.gif"
  cat=$(latency "${k[@]}" cat latest "$img")
  ls=$(latency "${k[@]}" ls latest --url "$img")
  snaps_ms=$(latency "${k[@]}" snapshots)
  # The last two unchanged re-runs compared (they share all chunks but the
  # pages').
  local last_two
  last_two=$("${k[@]}" snapshots --json | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)[-2:]))')
  # shellcheck disable=SC2086 # two ids
  read -r diff_rss diff_s < <(measure "${k[@]}" diff $last_two)
  local art="http://127.0.0.1:$port/pages/$((n / 2 / 1000))/$((n / 2)).html" r=(--cache-dir "$work/cache" restore latest "$work/out" --article)
  rm -rf "$work/cache" "$work/out"
  read -r art_rss art_first < <(measure "${k[@]}" "${r[@]}" "$art")
  art_again=$(latency "${k[@]}" "${r[@]}" "$art")
  read -r verify_rss verify_wall < <(measure "${k[@]}" verify)
  echo "| $name | $n | $entries | $cold_rss MB | $warm_rss MB | $cold_wall s | $first_wall s | $warm_wall s | $(python3 -c "print(f'{$warm_wall/$cold_wall:.2f}')") | $((index / entries)) B | $((manifests / entries)) B | $((grow / 1024)) KB | $cat ms | $ls ms | $snaps_ms ms | $diff_s s, $diff_rss MB | $art_first s, $art_rss MB | $art_again ms | $verify_wall s, $verify_rss MB |"
}

if [ -n "${SCALE_SERVE:-}" ]; then
  # Profiling by hand: serve the site of $SCALE_SERVE pages until interrupted.
  make_site "$work/site" "$SCALE_SERVE"
  start_nginx "$work/site"
  echo "serving http://127.0.0.1:$port/sitemap.xml (configuration: $work/kura.toml)"
  sleep infinity
fi

echo "| binary | pages | entries | cold RSS | warm RSS | cold wall | first warm wall | warm wall | warm/cold | index/entry | manifest/entry | a warm run adds | cat | ls --url | snapshots | diff of the last two (RSS) | restore --article, first (RSS) | again | verify (RSS) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in $sizes; do
  stop_nginx
  rm -rf "$work/site"
  make_site "$work/site" "$n"
  start_nginx "$work/site"
  # The site's files written back and read once, so the first binary's
  # cold run does not pay for the page cache the second finds warm.
  sync
  find "$work/site" -type f -exec cat {} + >/dev/null
  bench "$new" "this build" "$n"
  [ -n "$base" ] && bench "$base" "baseline" "$n"
done
true
