# Sourced by the scripted benchmarks: sets `new` to the build under test
# (argument 1, else a fresh release build) and `base` to an optional
# baseline build (argument 2), both as absolute paths, and `work` to a
# temporary directory removed on exit (with `$server`, if one was started).
new=${1:-}
base=${2:-}
if [ -z "$new" ]; then
  cargo build --release --quiet
  new=target/release/kura
fi
new=$(realpath "$new")
if [ -n "$base" ]; then base=$(realpath "$base"); fi
work=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
