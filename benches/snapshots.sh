#!/usr/bin/env bash
# A year of runs (issue 12): what naming `latest` and listing snapshots cost
# once an archive holds thousands of snapshots. Copies ARCHIVE (packs and
# index hard-linked, never written; the snapshots copied), adds N snapshots
# made from its newest one (the root rewritten with start times 4 hours
# apart going back, so each is a valid snapshot of the same entries with an
# id of its own, as a year of unchanged runs every 4 hours would leave:
# N = 2190), then times, binaries alternating, 11 rounds: `kura snapshots`,
# `kura cat latest URL`, `kura cat ID URL` (the newest by id),
# `kura ls latest --url URL`, and the first `kura snapshots` with no heads
# cached (`index/snapshot-heads` removed first; 3 rounds). Medians.
#
# By hand: benches/snapshots.sh ARCHIVE URL N [KURA_BINARY [BASELINE_BINARY]]
# URL: an entry of the newest snapshot. Needs python3 and the zstd command.
# Results go to benches/results/<date>-snapshots-<N>-<cores>c.md.
set -euo pipefail
cd "$(dirname "$0")/.."
archive=$(realpath "$1")
url=$2
n=$3
shift 3
. benches/binaries.sh
command -v zstd >/dev/null || { echo "needs the zstd command (apt-get install zstd)" >&2; exit 2; }
copy=$work/archive
mkdir -p "$copy"
for part in "$archive"/*; do
  case $(basename "$part") in
    snapshots) cp -r "$part" "$copy/" ;;
    *) cp -al "$part" "$copy/" ;;
  esac
done
# Never a file of the original's: each binary writes its own.
rm -f "$copy/index/snapshot-heads"

python3 - "$copy" "$n" <<'PY'
import datetime, hashlib, json, os, struct, subprocess, sys
arch, n = sys.argv[1], int(sys.argv[2])
d = os.path.join(arch, "snapshots")
newest = max(os.listdir(d), key=lambda f: os.path.getmtime(os.path.join(d, f)))
b = open(os.path.join(d, newest), "rb").read()
off, ln = struct.unpack("<QQ", b[-24:-8])
assert b[-8:] == b"KURAROOT", "not a chunked manifest"
z = lambda args, data: subprocess.run(["zstd", *args, "-c"], input=data, capture_output=True, check=True).stdout
root = json.loads(z(["-d"], b[off:off + ln]))
started = datetime.datetime.fromisoformat(root["started"].replace("Z", "+00:00"))
for k in range(1, n + 1):
    t = started - datetime.timedelta(hours=4 * k)
    r = dict(root, started=t.isoformat().replace("+00:00", "Z"),
             finished=(t + datetime.timedelta(seconds=30)).isoformat().replace("+00:00", "Z"))
    frame = z(["-3"], json.dumps(r, separators=(",", ":")).encode())
    out = b[:off] + frame + struct.pack("<QQ", off, len(frame)) + b"KURAROOT"
    open(os.path.join(d, hashlib.sha256(frame).hexdigest()), "wb").write(out)
PY

count=$(ls "$copy/snapshots" | wc -l)
root_bytes=$(stat -c %s "$copy/snapshots/$(ls "$copy/snapshots" | head -1)")
out=benches/results/$(date -u +%F)-snapshots-$count-$(nproc)c.md
python3 - "$copy" "$url" "$count" "$root_bytes" "$out" "$new" ${base:+"$base"} <<'PY'
import os, statistics, subprocess, sys, time
arch, url, count, root_bytes, out, bins = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
bins = bins[::-1]  # baseline first
heads = os.path.join(arch, "index", "snapshot-heads")
def run(b, args):
    s = time.perf_counter()
    r = subprocess.run([b, "--archive", arch, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert r.returncode == 0, (b, args)
    return (time.perf_counter() - s) * 1000, r.stdout
newest = run(bins[0], ["snapshots", "--latest", "1", "--json"])[1]
newest = __import__("json").loads(newest)[-1]["id"][:16]
cmds = {"kura snapshots (heads cached)": ["snapshots"], "kura cat latest URL": ["cat", "latest", url],
        "kura cat ID URL": ["cat", newest, url], "kura ls latest --url URL": ["ls", "latest", "--url", url]}
res = {}
for rnd in range(3):
    for b in bins:
        if os.path.exists(heads):
            os.remove(heads)
        res.setdefault(("first kura snapshots", b), []).append(run(b, ["snapshots"])[0])
for rnd in range(11):
    for b in bins:
        for k, a in cmds.items():
            res.setdefault((k, b), []).append(run(b, a)[0])
names = [os.path.basename(b) for b in bins]
lines = [f"# {count} snapshots ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {os.cpu_count()} cores)", "",
         f"`benches/snapshots.sh`: {count} snapshots of the same entries, each manifest file {int(root_bytes) / 1e6:.2f} MB; "
         f"binaries {', '.join(bins)}.", "",
         "| command | " + " | ".join(names) + (" | ratio |" if len(bins) > 1 else " |"),
         "|---|" + "---|" * (len(bins) + (len(bins) > 1))]
for k in ["first kura snapshots", *cmds]:
    m = [statistics.median(res[(k, b)]) for b in bins]
    row = f"| `{k}` | " + " | ".join(f"{x:.1f} ms" for x in m)
    lines.append(row + (f" | {m[-1] / m[0]:.2f}x |" if len(bins) > 1 else " |"))
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
