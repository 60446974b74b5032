#!/usr/bin/env bash
# `kura serve` on a real archive (issue 14): N articles of the sample site
# (`kura site`, Chinese text, a GBK article among them) archived once, then
# `kura serve` started on it with an empty cache. Prints the time until the
# port opens (the whole archive indexed), search latency (p50/p95 of 100
# queries of Chinese words from the site's vocabulary, over keep-alive),
# article view and archived-document time to first byte (p50/p95 of 50
# articles; the first view, which opens the snapshot, apart), a snapshot
# page, and the server's peak RSS. With a second binary, the same archive is
# served by each in turn, each from an empty cache.
#
# By hand: benches/serve.sh [N [KURA_BINARY [BASELINE_BINARY]]]   (N defaults
# to 2000; the archive needs about 0.8 MB an article)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
kura=${2:-}
if [ -z "$kura" ]; then
  cargo build --release --quiet
  kura=target/release/kura
fi
kura=$(realpath "$kura")
base=${3:+$(realpath "$3")}
src=$(pwd)
work=$(mktemp -d /tmp/kura-serve.XXXXXX)
site_pid=
serve_pid=
cleanup() {
  for p in $serve_pid $site_pid; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
export -n KURA_CONFIG KURA_ARCHIVE || true

"$kura" site --articles "$n" --feed-items 50 >site.urls 2>site.err &
site_pid=$!
for _ in $(seq 600); do grep -q '^sitemap ' site.urls 2>/dev/null && break; sleep 0.1; done
sitemap=$(awk '$1 == "sitemap" { print $2 }' site.urls)
start=$(date +%s.%N)
"$kura" --archive archive archive --allow-private --per-host-interval-ms 0 "$sitemap" >/dev/null 2>archive.err
end=$(date +%s.%N)
kill -TERM "$site_pid"; wait "$site_pid" 2>/dev/null || true; site_pid=
echo "archived the $n-article site in $(python3 -c "print(f'{$end - $start:.1f}')") s; archive $(du -sh archive | cut -f1)"

measure() {
  local kura=$1
  rm -rf cache
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  start=$(date +%s.%N)
  "$kura" --archive archive serve --bind "127.0.0.1:$port" --cache-dir cache >serve.out 2>serve.err &
  serve_pid=$!
  # Peak anonymous memory (the heap; VmHWM also counts the index files tantivy
  # maps, which the kernel can drop at will), sampled every 50 ms.
  (while kill -0 "$serve_pid" 2>/dev/null; do awk '/RssAnon/ {print $2}' "/proc/$serve_pid/status" 2>/dev/null; sleep 0.05; done | sort -n | tail -1 > anon.peak) &
  until curl -s -o /dev/null "http://127.0.0.1:$port/api/snapshots"; do
    kill -0 "$serve_pid" 2>/dev/null || { cat serve.err; exit 1; }
    sleep 0.05
  done
  end=$(date +%s.%N)
  echo "index built and port open after $(python3 -c "print(f'{$end - $start:.1f}')") s; index $(du -sh cache | cut -f1); peak RSS so far $(awk '/VmHWM/ {printf "%.0f MB", $2/1024}' "/proc/$serve_pid/status")"

  python3 - "$port" "$src/tests/site/src/vocab.rs" <<'PY'
import http.client, json, random, re, sys, time, urllib.parse
port, vocab = int(sys.argv[1]), sys.argv[2]
words = sorted(set(w for w in re.findall(r"[\u4e00-\u9fff]{2,4}", open(vocab, encoding="utf-8").read())))
rnd = random.Random(5)
conn = http.client.HTTPConnection("127.0.0.1", port)
def get(path):
    t = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    first = time.perf_counter() - t
    body = r.read()
    return r.status, first, time.perf_counter() - t, body
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000
lat, hits, views = [], 0, []
for _ in range(100):
    q = rnd.choice(words)
    status, _, total, body = get("/api/search?q=" + urllib.parse.quote(q))
    assert status == 200, status
    found = json.loads(body)["hits"]
    hits += bool(found)
    lat.append(total)
    views += [h["view"] for h in found[:1]]
print(f"search: {len(words)} words, 100 queries, {hits} with hits; p50 {pct(lat, .5):.1f} ms, p95 {pct(lat, .95):.1f} ms")
ttfb, doc = [], []
for k, v in enumerate(views[:51]):
    status, first, _, body = get(v)
    assert status == 200, (v, status)
    if k == 0:
        print(f"first article view (opens the snapshot): {first * 1000:.0f} ms")
        snap = re.search(rb'href="/s/([0-9a-f]{64})"', body).group(1).decode()
        status, first, total, _ = get("/s/" + snap)
        assert status == 200, status
        print(f"snapshot page: TTFB {first * 1000:.0f} ms, whole {total * 1000:.0f} ms")
        continue
    ttfb.append(first)
    m = re.search(rb'src="(/s/[0-9a-f]+/doc/\d+)"', body)
    if m:
        status, first, _, _ = get(m.group(1).decode())
        doc.append(first)
print(f"article view TTFB: p50 {pct(ttfb, .5):.1f} ms, p95 {pct(ttfb, .95):.1f} ms ({len(ttfb)} views); "
      f"archived document TTFB: p50 {pct(doc, .5):.1f} ms, p95 {pct(doc, .95):.1f} ms")
PY
  awk '/VmHWM/ {h=$2} /RssAnon/ {a=$2} /RssFile/ {f=$2} END {printf "server peak RSS: %.0f MB (now: %.0f MB anonymous, %.0f MB mapped index and binary files)\n", h/1024, a/1024, f/1024}' "/proc/$serve_pid/status"
  kill -TERM "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=
  sleep 0.2
  echo "server peak anonymous memory (sampled): $(awk '{printf "%.0f MB", $1/1024}' anon.peak)"
}

echo "== $kura"
measure "$kura"
if [ -n "$base" ]; then
  echo "== baseline $base"
  measure "$base"
fi
