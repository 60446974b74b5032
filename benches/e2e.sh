#!/usr/bin/env bash
# End-to-end benchmark: Kura against wget, restic and borg on one corpus, in one run.
# Run by hand (not by CI):
#
#   benches/e2e.sh [N] [--latency-ms L] [--no-wget-single] [--no-backups] [--out FILE]
#
# --no-backups skips restic and borg (for large N: at 10,000 articles Kura's archive and
# wget's mirror are ~8 GB and ~7 GB, each repository and restored tree as much again);
# --kura-only runs only Kura's cold and warm archive and verify (peak RSS at large N
# needs no more disk than the archive, ~0.83 MB an article).
# N (default 1000) articles of the built-in sample site (`kura site`), served once on
# loopback and shared by every tool. Measured with /usr/bin/time -v (wall, user+sys CPU,
# peak RSS) and du -sb:
#   a. kura archive of the sitemap, cold then warm (unchanged site);
#   b. wget --page-requisites of the sitemap's URLs, 4 processes (Kura's per-host
#      concurrency) and, unless --no-wget-single, 1 process;
#   c. restic backup and borg create (zstd,3) of wget's mirror, twice;
#   d. kura verify --read-data / restic check --read-data / borg check --verify-data;
#   e. kura restore / restic restore / borg extract; restic and borg backups of the
#      tree Kura restored (the same content as Kura's archive, for the size goal);
#   f. the practical limit: SHA-256 + zstd(3) of the mirror, in-process, one thread
#      (benches/limit.rs).
# Writes benches/results/<date>-<N>-articles-<cores>c[-<L>ms].md (tables, goals of the
# issue, versions, load average) and prints it. Page cache is warm throughout (the
# machine may be shared, so caches are not dropped).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

n=1000
latency=0
wget_single=1
backups=1
kura_only=0
out=
while [ $# -gt 0 ]; do
    case "$1" in
        --latency-ms) latency=$2; shift 2 ;;
        --no-wget-single) wget_single=0; shift ;;
        --no-backups) backups=0; shift ;;
        --kura-only) kura_only=1; wget_single=0; backups=0; shift ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        [0-9]*) n=$1; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

# 1. Tools and build.
missing=()
for tool in wget:wget restic:restic borg:borgbackup; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y "${missing[@]}"
fi
cargo build --release --quiet
kura=$root/target/release/kura
limit=$(cargo bench --quiet --no-run --bench limit --message-format=json |
    python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')

work=$(mktemp -d /tmp/kura-e2e.XXXXXX)
site_pid=
cleanup() {
    if [ -n "$site_pid" ]; then
        kill -TERM "$site_pid" 2>/dev/null || true
        wait "$site_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
t=$work/t
mkdir -p "$t"

# Runs a command under /usr/bin/time -v; figures go to $t/NAME.time, output to
# $t/NAME.out/.err, the exit code to $t/NAME.rc. A failing tool does not stop the run
# (wget exits 8 for the site's planted 404s); the report shows the code.
measure() {
    local name=$1; shift
    echo "== $name" >&2
    local rc=0
    /usr/bin/time -v -o "$t/$name.time" "$@" >"$t/$name.out" 2>"$t/$name.err" || rc=$?
    echo "$rc" >"$t/$name.rc"
}
# Records bytes on disk of a directory as $t/NAME.du.
disk() { du -sb "$2" | cut -f1 >"$t/$1.du"; }

# Refuse to fill a shared disk: Kura's archive is ~0.83 MB an article; with wget's mirror
# and a restored tree alive at once, ~2.5 MB.
per_article_kb=2800
[ "$backups" -eq 1 ] || per_article_kb=2000
[ "$kura_only" -eq 0 ] || per_article_kb=1000
free_kb=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
if [ $((n * per_article_kb + 2000000)) -gt "$free_kb" ]; then
    echo "not enough free disk for $n articles: need ~$((n * per_article_kb / 1000)) MB + 2 GB spare, have $((free_kb / 1000)) MB" >&2
    exit 2
fi
uptime >"$t/load.before"
df -h "$work" | tail -n 1 >&2

# 2. The site.
site_args=(--articles "$n" --feed-items 50)
[ "$latency" -gt 0 ] && site_args+=(--latency-ms "$latency")
"$kura" site "${site_args[@]}" >"$work/site.urls" 2>"$work/site.err" &
site_pid=$!
for _ in $(seq 600); do
    grep -q '^sitemap ' "$work/site.urls" 2>/dev/null && break
    kill -0 "$site_pid" 2>/dev/null || { cat "$work/site.err" >&2; exit 1; }
    sleep 0.1
done
sitemap=$(awk '$1 == "sitemap" { print $2 }' "$work/site.urls")
[ -n "$sitemap" ] || { echo "the site printed no sitemap URL" >&2; exit 1; }
wget -q -O "$work/sitemap.xml" "$sitemap"
python3 -c '
import re, sys
print("\n".join(re.findall(r"<loc>([^<]+)</loc>", open(sys.argv[1]).read())))' \
    "$work/sitemap.xml" >"$work/urls.txt"
echo "site up: $(wc -l <"$work/urls.txt") URLs in the sitemap" >&2

# The site encodes its (at most 384) master images lazily on first request; fetch the
# first 200 articles with their images once, untimed, so no tool pays for that.
head -n 200 "$work/urls.txt" >"$work/warmup.txt"
wget -q --page-requisites --span-hosts -e robots=off --tries=1 --directory-prefix="$work/warmup" \
    -i "$work/warmup.txt" || true
rm -rf "$work/warmup"

# wget's defaults (20 tries, up to 10 s between them, no retry on 5xx) would spend
# ~150 s on the site's one truncated image; these match Kura's (3 retries, backoff).
wget_args=(--page-requisites --span-hosts --no-verbose -e robots=off
    --tries=4 --waitretry=2 --retry-on-http-error=429,500,502,503,504)

# 3a. Kura, cold then warm.
kura_args=(archive --allow-private --per-host-interval-ms 0 --json "$sitemap")
measure kura_cold "$kura" --archive "$work/kura" "${kura_args[@]}"
disk kura_cold "$work/kura"
measure kura_warm "$kura" --archive "$work/kura" "${kura_args[@]}"
disk kura "$work/kura"
du -sb "$work/kura/packs" | cut -f1 >"$t/kura_packs.du"

if [ "$kura_only" -eq 1 ]; then
    measure kura_verify "$kura" --archive "$work/kura" verify --read-data --json
else # (the rest of the measurements, not indented)
# 3b. wget: 4 processes (the URL list dealt round-robin), then 1.
split -n r/4 -d "$work/urls.txt" "$work/urls.part."
cat >"$work/wget4.sh" <<EOF
for part in "$work"/urls.part.*; do
    wget ${wget_args[*]} --directory-prefix="$work/mirror4" -i "\$part" 2>"\$part.log" &
done
wait
cat "$work"/urls.part.*.log >&2
EOF
measure wget4 bash "$work/wget4.sh"
disk wget4 "$work/mirror4"
mirror=$work/mirror4
if [ "$wget_single" -eq 1 ]; then
    measure wget1 wget "${wget_args[@]}" --directory-prefix="$work/mirror1" -i "$work/urls.txt"
    disk wget1 "$work/mirror1"
    mirror=$work/mirror1
    rm -rf "$work/mirror4"
fi
disk mirror "$mirror"

# 3f. The practical limit (here, while the mirror exists).
measure limit "$limit" "$mirror"

# Repositories and restored trees are deleted as soon as they are measured, so the peak
# disk use stays near Kura's archive + wget's mirror + one repository + one tree.
export RESTIC_PASSWORD=kura-bench RESTIC_CACHE_DIR=$work/restic-cache
export BORG_BASE_DIR=$work/borg-base BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
if [ "$backups" -eq 1 ]; then
    # 3c-e for restic, then for borg: backup twice, check every byte, restore.
    restic -q init --repository-version 2 -r "$work/restic" >/dev/null
    (
        cd "$mirror"
        measure restic_backup1 restic -r "$work/restic" --compression auto backup .
        measure restic_backup2 restic -r "$work/restic" --compression auto backup .
    )
    disk restic "$work/restic"
    measure restic_check restic -r "$work/restic" check --read-data
    measure restic_restore restic -r "$work/restic" restore latest --target "$work/r-restic"
    disk restic_restore "$work/r-restic"
    rm -rf "$work/r-restic" "$work/restic"

    borg init -e none "$work/borg" >/dev/null
    (
        cd "$mirror"
        measure borg_create1 borg create --compression zstd,3 "$work/borg::one" .
        measure borg_create2 borg create --compression zstd,3 "$work/borg::two" .
    )
    disk borg "$work/borg"
    measure borg_check borg check --verify-data "$work/borg"
    mkdir -p "$work/r-borg"
    (cd "$work/r-borg" && measure borg_extract borg extract "$work/borg::two")
    disk borg_extract "$work/r-borg"
    rm -rf "$work/r-borg" "$work/borg"
fi
rm -rf "$mirror"

# 3d-e for Kura.
measure kura_verify "$kura" --archive "$work/kura" verify --read-data --json
measure kura_restore "$kura" --archive "$work/kura" restore latest "$work/r-kura" --layout raw
disk kura_restore "$work/r-kura"

# Kura fetches more than wget (srcset 2x, lazy and og:image images, the real WeChat
# images), so for the size goal restic and borg also store exactly Kura's content: the
# tree Kura restored (every URL of the snapshot as a file).
if [ "$backups" -eq 1 ]; then
    restic -q init --repository-version 2 -r "$work/restic-same" >/dev/null
    (cd "$work/r-kura" && measure restic_same restic -r "$work/restic-same" --compression auto backup .)
    disk restic_same "$work/restic-same"
    rm -rf "$work/restic-same"
    borg init -e none "$work/borg-same" >/dev/null
    (cd "$work/r-kura" && measure borg_same borg create --compression zstd,3 "$work/borg-same::one" .)
    disk borg_same "$work/borg-same"
    rm -rf "$work/borg-same"
fi
rm -rf "$work/r-kura"
fi

uptime >"$t/load.after"
{
    echo "kura: $("$kura" --version)"
    echo "wget: $(wget --version | head -n 1)"
    echo "restic: $(restic version)"
    echo "borg: $(borg --version)"
    echo "rustc: $(rustc --version)"
    echo "kernel: $(uname -sr)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(free -m | awk '/^Mem:/ { print $2 " MiB" }')"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' (src modified)')"
} >"$t/versions"

# 4. The report.
cores=$(nproc)
if [ -z "$out" ]; then
    suffix=; [ "$latency" -gt 0 ] && suffix="-${latency}ms"
    out=benches/results/$(date +%F)-$n-articles-${cores}c$suffix.md
fi
mkdir -p "$(dirname "$out")"
python3 benches/e2e_report.py "$t" "$n" "$latency" "$cores" "$wget_single" "$out"
echo "written: $out" >&2
