#!/usr/bin/env bash
# Politeness without idling (issue 11): many hosts, skewed pages, default
# politeness. 100 pages on 28 site hosts (127.0.0.1-28), each page served
# from its own host, with a skewed number of images (a few to 300, as on
# real sites), 60% on the page's host and 40% on one of four CDNs
# (127.0.0.29-32); every answer after 3 ms of server latency, over
# keep-alive. The politeness floor is what the busiest host alone needs:
# its requests, one interval apart. Prints wall time, the floor (from the
# server's own log), wall / floor, and for each host its shortest gap
# between request starts and most requests in flight (the limits, checked).
#
# Then, with no interval (`--per-host-interval-ms 0`), pages a second for
# Kura and for wget2 (`-p -H`, 16 threads) against the same site.
#
# By hand: benches/frontier.sh [KURA_BINARY [BASELINE_BINARY]]
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/binaries.sh
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 - "$port" "$work/log" "$work/pages" <<'PY' &
import asyncio, random, sys, time
port, log_path, pages_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
SITES, CDNS, PAGES, LATENCY = 28, 4, 100, 0.003
rnd = random.Random(11)
pages = {}
for j in range(PAGES):
    host = 1 + j % SITES
    # Pareto-shaped image counts: most pages a few dozen, some hundreds.
    n = min(300, int(6 / (1 - rnd.random()) ** 0.9))
    cdn = 1 + SITES + j % CDNS
    imgs = [f"http://127.0.0.{host if rnd.random() < 0.6 else cdn}:{port}/i/{j}-{k}.png" for k in range(n)]
    pages[(host, f"/p/{j}")] = imgs
with open(pages_path, "w") as f:
    for (host, path) in pages:
        f.write(f"http://127.0.0.{host}:{port}{path}\n")
log = open(log_path, "a", buffering=1)
in_flight = {}

async def handle(reader, writer):
    host = writer.get_extra_info("sockname")[0]
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            path = line.split()[1].decode()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            start = time.time()
            in_flight[host] = in_flight.get(host, 0) + 1
            log.write(f"{start} {host} start {in_flight[host]} {path}\n")
            await asyncio.sleep(LATENCY)
            h = int(host.rsplit(".", 1)[1])
            imgs = pages.get((h, path))
            if imgs is not None:
                body = ("<!doctype html><title>p</title><link rel='icon' href='/icon.png'><p>"
                        + "text " * 200 + "".join(f'<img src="{u}">' for u in imgs)).encode()
                head, ctype = "200 OK", "text/html"
            elif path.startswith("/i/") or path == "/icon.png":
                body = b"\x89PNG\r\n\x1a\n" + f"{host}{path}".encode() * 8
                head, ctype = "200 OK", "image/png"
            else:
                body, head, ctype = b"no", "404 Not Found", "text/plain"
            in_flight[host] -= 1
            writer.write(f"HTTP/1.1 {head}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n".encode() + body)
            await writer.drain()
    except (ConnectionError, IndexError):
        pass
    finally:
        writer.close()

async def main():
    for h in range(1, SITES + CDNS + 1):
        await asyncio.start_server(handle, f"127.0.0.{h}", port, backlog=256)
    await asyncio.Event().wait()
asyncio.run(main())
PY
server=$!
sleep 1
mapfile -t pages < "$work/pages"

# Prints a row: wall, floor, wall/floor, and the limits as the server saw them.
report() {
  python3 - "$work/log" "$1" "$2" "$3" "$4" <<'PY'
import sys
log, start, end, name, interval = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
starts, peak = {}, {}
for line in open(log):
    t, host, _, n, _ = line.split(" ", 4)
    starts.setdefault(host, []).append(float(t))
    peak[host] = max(peak.get(host, 0), int(n))
wall = end - start
floor = max((len(s) - 1) * interval for s in starts.values())
gaps = [b - a for s in starts.values() for a, b in zip(sorted(s), sorted(s)[1:])]
requests = sum(len(s) for s in starts.values())
short = sum(1 for g in gaps if g < interval * 0.95)
print(f"| {name} | {len(starts)} | {requests} | {wall:.1f} s | {floor:.1f} s | {wall / floor if floor else 0:.2f} "
      f"| {min(gaps) * 1000:.0f} ms | {short} | {max(peak.values())} |")
PY
}

polite() {
  : > "$work/log"
  rm -rf "$work/archive"
  local start end
  start=$(date +%s.%N)
  (cd "$work" && env -u KURA_CONFIG -u KURA_ARCHIVE "$1" --archive "$work/archive" archive "${pages[@]}" \
    --allow-private >/dev/null 2>&1) || true
  end=$(date +%s.%N)
  report "$start" "$end" "$2" 0.1
}

echo "Default politeness (100 ms between starts to one host, 4 in flight per host, 16 in all, robots.txt read):"
echo
echo "| binary | hosts | requests | wall | floor | wall / floor | shortest gap | gaps under 95 ms | most in flight at a host |"
echo "|---|---|---|---|---|---|---|---|---|"
polite "$new" "this build"
[ -n "$base" ] && polite "$base" "baseline"

# No interval: pages a second (the same pages and images, all fetched).
fast() {
  : > "$work/log"
  rm -rf "$work/archive" "$work/mirror"
  local start end
  start=$(date +%s.%N)
  (cd "$work" && "$@" >/dev/null 2>&1) || true
  end=$(date +%s.%N)
  python3 -c "import sys; s, e, n = map(float, sys.argv[1:4]); r = sum(1 for _ in open(sys.argv[4])); print(f'{e - s:.2f} s, {n / (e - s):.0f} pages/s, {r} requests')" \
    "$start" "$end" "${#pages[@]}" "$work/log"
}
echo
echo "No interval (16 in flight, 4 per host unless said; wget2 16 threads, no limit per host):"
echo
echo "- this build: $(fast env -u KURA_CONFIG -u KURA_ARCHIVE "$new" --archive "$work/archive" archive "${pages[@]}" --allow-private --no-robots --per-host-interval-ms 0)"
echo "- this build, 16 per host as wget2: $(fast env -u KURA_CONFIG -u KURA_ARCHIVE "$new" --archive "$work/archive" archive "${pages[@]}" --allow-private --no-robots --per-host-interval-ms 0 --per-host 16)"
[ -n "$base" ] && echo "- baseline: $(fast env -u KURA_CONFIG -u KURA_ARCHIVE "$base" --archive "$work/archive" archive "${pages[@]}" --allow-private --no-robots --per-host-interval-ms 0)"
if command -v wget2 >/dev/null; then
  echo "- wget2: $(fast wget2 -q -p -H --robots=off --max-threads=16 -P "$work/mirror" "${pages[@]}")"
fi
true
