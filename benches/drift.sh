#!/usr/bin/env bash
# Dictionaries when content drifts (issue 12): an archive whose HTML
# dictionary was trained on the sample site (`kura site`, N articles) then
# archives pages of another template (a GBK-era forum: other markup, other
# words), twice: B1 (stored with the old dictionary; a build that checks for
# drift trains a new one at its commit) and B2 (new pages of the same
# forum). Prints, per binary, the wall time of each run and the stored
# bytes of B1's and B2's pages (from `kura stats`), so the cost of the check
# and what the new dictionary saves show side by side.
#
# By hand: benches/drift.sh [N [KURA_BINARY [BASELINE_BINARY]]]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
shift || true
. benches/binaries.sh

python3 - "$work/forum" <<'PY'
import os, sys, random
root = sys.argv[1]
rnd = random.Random(7)
words = ["帖子", "回复", "楼主", "版块", "精华", "置顶", "论坛", "网友", "话题", "讨论", "图片", "链接"]
for part, start in (("b1", 0), ("b2", 600)):
    d = os.path.join(root, part)
    os.makedirs(d, exist_ok=True)
    for i in range(start, start + 600):
        menu = "".join(f'<div class="forum-board" data-board="{b}"><span class="board-title">版块 {b}</span>'
                       f'<span class="board-stat">今日 {rnd.randint(0, 99)}</span></div>' for b in range(30))
        posts = "".join(f'<div class="post"><div class="author">网友{rnd.randint(1, 99999)}</div><div class="body">'
                        + "".join(rnd.choice(words) for _ in range(rnd.randint(20, 60)))
                        + f'</div><div class="post-time">2009-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}</div></div>'
                        for _ in range(rnd.randint(5, 15)))
        html = (f'<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>论坛 {i}</title>'
                f'<script src="/static/forum.js"></script><link rel="stylesheet" href="/static/forum.css"></head>'
                f'<body class="forum"><aside>{menu}</aside><main id="thread-{i}">{posts}</main>'
                f'<div class="copyright">论坛版权所有 备案号 12345</div></body></html>')
        open(os.path.join(d, f"t{i}.html"), "w", encoding="utf-8").write(html)
PY

"$new" site --articles "$n" --feed-items 20 >"$work/site.urls" 2>"$work/site.err" &
server=$!
for _ in $(seq 600); do grep -q '^sitemap ' "$work/site.urls" 2>/dev/null && break; sleep 0.1; done
sitemap=$(awk '$1 == "sitemap" { print $2 }' "$work/site.urls")

article_bytes() {
  "$1" --archive "$2" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kinds"]["article"]["stored_bytes"])'
}

run() {
  local bin=$1 name=$2 a="$work/archive-$2"
  rm -rf "$a"
  local k=(env -u KURA_ARCHIVE -u KURA_CONFIG RUST_LOG=kura=info "$bin" --archive "$a")
  "${k[@]}" archive --allow-private --per-host-interval-ms 0 "$sitemap" >/dev/null 2>"$work/log-a"
  local before after1 after2 t0 t1 t2
  before=$(article_bytes "$bin" "$a")
  t0=$(date +%s.%N)
  "${k[@]}" archive "$work/forum/b1" >/dev/null 2>"$work/log-b1"
  t1=$(date +%s.%N)
  after1=$(article_bytes "$bin" "$a")
  "${k[@]}" archive "$work/forum/b2" >/dev/null 2>"$work/log-b2"
  t2=$(date +%s.%N)
  after2=$(article_bytes "$bin" "$a")
  local dicts
  dicts=$(find "$a/dictionaries" -type f | wc -l)
  printf '| %s | %.2f s | %.2f s | %d B | %d B | %d |\n' "$name" \
    "$(python3 -c "print($t1 - $t0)")" "$(python3 -c "print($t2 - $t1)")" \
    "$((after1 - before))" "$((after2 - after1))" "$dicts"
  grep -h "dictionary" "$work/log-b1" "$work/log-b2" | sed 's/^/    /' >&2 || true
}

echo "| binary | B1 run (600 forum pages) | B2 run (600 more) | B1 pages stored | B2 pages stored | dictionaries |"
echo "|---|---|---|---|---|---|"
run "$new" "this build"
[ -n "$base" ] && run "$base" "baseline"
true
