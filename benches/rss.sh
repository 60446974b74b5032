#!/usr/bin/env bash
# Peak RSS of `kura archive` over N local files (default 10,000): mixed
# 20-100 KB HTML-like pages and 30-500 KB incompressible "images", 60% of
# them duplicates. Prints the figures; run by hand: benches/rss.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/corpus" "$n" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(root)
rng = random.Random(2026)
uniq = []
words = ["跨境电商", "互联网", "<p>", "</p>\n", "archive", "出海", "link rot"]
for i in range(n):
    if uniq and rng.random() < 0.6:
        data = rng.choice(uniq)
    elif rng.random() < 0.5:
        size = rng.randrange(20_000, 100_000)
        s = []
        while sum(map(len, s)) < size // 3:
            s.append(rng.choice(words) + str(rng.randrange(100000)) + " ")
        data = "".join(s).encode()
        uniq.append(data)
    else:
        data = b"\xff\xd8\xff\xe0" + os.urandom(rng.randrange(30_000, 500_000))
        uniq.append(data)
    with open(os.path.join(root, f"{i:06}"), "wb") as f:
        f.write(data)
PY
bytes=$(du -sb "$work/corpus" | cut -f1)
/usr/bin/time -v target/release/kura --archive "$work/archive" archive "$work/corpus" >/dev/null 2>"$work/time"
rss=$(grep 'Maximum resident set size' "$work/time" | awk '{print $NF}')
wall=$(grep 'Elapsed (wall clock)' "$work/time" | awk '{print $NF}')
echo "files: $n  corpus: $((bytes / 1048576)) MiB  wall: $wall  peak RSS: $((rss / 1024)) MiB"
