#!/usr/bin/env bash
# Growth check for hostile input (issue 15): each case at size N and 4N,
# archived by the release binary from a loopback server (pages) or a local
# directory (posts); prints wall time, peak RSS and the 4N/N ratios. Work
# linear in the input gives time ratios of 4 or less (process start-up is a
# fixed cost); quadratic work gives about 16. By hand:
#   benches/growth.sh [KURA_BINARY [BASELINE_BINARY]]
# With a baseline binary (e.g. a build of an earlier commit), both run on
# the same inputs and the table has a column for each.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/binaries.sh
mkdir -p "$work/www"
python3 - "$work" <<'PY'
import os, sys
w = sys.argv[1]
def page(name, body):
    open(f"{w}/www/{name}", "w").write(body)
def post(name, body):
    os.makedirs(f"{w}/posts/{name}", exist_ok=True)
    open(f"{w}/posts/{name}/post.md", "w").write(body)
for tag, n in (("n", 1), ("4n", 4)):
    page(f"nested-{tag}.html", "<title>t</title>" + "<div>" * (20_000 * n) + "x")
    page(f"flat-{tag}.html", "<title>t</title>" + "".join(f"<p>paragraph {i} text</p>\n" for i in range(50_000 * n)))
    page(f"svg-style-{tag}.html", "<title>t</title><svg>" + "<g>" * 1000 + "<style>a{fill:red}</style>" * (20_000 * n))
    post(f"quotes-{tag}", "---\ntitle: t\n---\n" + "> " * (100_000 * n) + "x\n")
    post(f"brackets-{tag}", "---\ntitle: t\n---\n" + "[" * (256 * 1024 * n) + "\n")
    post(f"frontmatter-{tag}", "---\ntitle: t\ntags: " + "[" * (20_000 * n) + "\n---\nbody\n")
    # Memory: a flat page of 500,000 / 2,000,000 elements (14 / 55 MiB), and
    # a post of 5 / 20 MiB of NULs.
    page(f"bigflat-{tag}.html", "<title>t</title>" + "<p>paragraph lorem ipsum</p>\n" * (500_000 * n))
    os.makedirs(f"{w}/posts/nul-{tag}", exist_ok=True)
    open(f"{w}/posts/nul-{tag}/post.md", "wb").write(b"\0" * (5 * 1024 * 1024 * n))
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$work/www" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
server=$!
sleep 1

# measure BINARY SOURCE: prints "SECONDS MAX_RSS_MB", or "timeout -" after 120 s.
measure() {
  local rc=0
  rm -rf "$work/archive" "$work/time"
  # From the work directory, so no ./config/kura.toml applies to either binary.
  (cd "$work" && env -u KURA_CONFIG -u KURA_ARCHIVE timeout 120 /usr/bin/time -o "$work/time" -f "%e %M" "$1" --archive "$work/archive" \
    archive "$2" --allow-private --no-robots >/dev/null 2>&1) || rc=$?
  if [ "$rc" -eq 124 ]; then
    echo "timeout -"
  else
    tail -1 "$work/time" | awk '{printf "%s %.0f\n", $1, $2 / 1024}'
  fi
}

printf "| case | N | 4N |"
[ -n "$base" ] && printf " baseline N | baseline 4N |"
printf "\n|---|---|---|"
[ -n "$base" ] && printf -- "---|---|"
printf "\n"
for case in nested flat svg-style quotes brackets frontmatter bigflat nul; do
  row="| $case |"
  bins=("$new")
  [ -n "$base" ] && bins+=("$base")
  for bin in "${bins[@]}"; do
    for tag in n 4n; do
      case $case in
        nested|flat|svg-style|bigflat) src="http://127.0.0.1:$port/$case-$tag.html" ;;
        *) src="$work/posts/$case-$tag" ;;
      esac
      read -r secs mb < <(measure "$bin" "$src")
      row="$row ${secs} s, ${mb} MB |"
    done
  done
  echo "$row"
done
