#!/usr/bin/env bash
# Fairness between hosts (issue 11): 10 pages on 127.0.0.1, each with 20
# images on a busy CDN (127.0.0.2) and 3 on each of three small hosts
# (127.0.0.3-5), default politeness (100 ms between starts to one host, 4
# in flight per host, 16 in all). The busy host alone needs 200 x 100 ms =
# 20 s; the small hosts need 3 s each and should be done long before. Prints
# for each binary the wall time and when each host saw its last request. By
# hand: benches/hosts.sh [KURA_BINARY [BASELINE_BINARY]]
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/binaries.sh
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 - "$port" "$work/log" <<'PY' &
import sys, time, threading, http.server, socketserver
port, log = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        host = self.server.server_address[0]
        with lock, open(log, "a") as f:
            f.write(f"{time.time()} {host} {self.path}\n")
        if self.path.startswith("/page/"):
            n = self.path.split("/")[2]
            imgs = [f"http://127.0.0.2:{port}/img/{n}-{k}.png" for k in range(20)]
            imgs += [f"http://127.0.0.{h}:{port}/img/{n}-{k}.png" for h in (3, 4, 5) for k in range(3)]
            body = ("<!doctype html><title>p</title><link rel=icon href=/i.png>"
                    + "".join(f'<img src="{u}">' for u in imgs)).encode()
            ctype = "text/html"
        else:
            # Distinct bytes per URL: nothing here looks like a placeholder.
            body = b"\x89PNG\r\n\x1a\n" + f"{host}{self.path}".encode()
            ctype = "image/png"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
for h in range(1, 6):
    s = S((f"127.0.0.{h}", port), H)
    threading.Thread(target=s.serve_forever, daemon=True).start()
threading.Event().wait()
PY
server=$!
sleep 1
pages=()
for n in $(seq 1 10); do pages+=("http://127.0.0.1:$port/page/$n"); done

run() {
  : > "$work/log"
  rm -rf "$work/archive"
  local start end
  start=$(date +%s.%N)
  (cd "$work" && env -u KURA_CONFIG -u KURA_ARCHIVE "$1" --archive "$work/archive" archive "${pages[@]}" \
    --allow-private --no-robots >/dev/null 2>&1) || true
  end=$(date +%s.%N)
  python3 - "$work/log" "$start" "$end" "$2" <<'PY'
import sys
log, start, end, name = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
last = {}
for line in open(log):
    t, host, _ = line.split(" ", 2)
    last[host] = max(last.get(host, 0), float(t) - start)
small = max(last.get(f"127.0.0.{h}", 0) for h in (3, 4, 5))
print(f"| {name} | {end - start:.1f} s | {last.get('127.0.0.2', 0):.1f} s | {small:.1f} s |")
PY
}

echo "| binary | wall | busy host done | small hosts done |"
echo "|---|---|---|---|"
run "$new" "this build"
[ -n "$base" ] && run "$base" "baseline"
true
