#!/usr/bin/env bash
# HTTPS load benchmark of `runsecrets server` with oha (from crates.io), on 127.0.0.1 only.
#
# The server is pinned to core 0 and oha to core 1 (taskset). Every figure is compared with a
# trivial endpoint (GET /livez) on the same TLS listener in the same run, because absolute
# latencies on a shared VM are mostly scheduler jitter.
#
#   benches/load.sh                # 3 rounds of 10 s each
#   ROUNDS=1 SECONDS_PER_RUN=5 benches/load.sh
#   BIN=/path/to/runsecrets benches/load.sh   # another build (A/B against an older commit)
#
# Needs: cargo, python3, taskset (util-linux). Installs oha into $TOOLS if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
RATE=${RATE:-1000}
PORT=${PORT:-18443}
ADMIN_PORT=${ADMIN_PORT:-18080}
FIXTURE=${FIXTURE:-tests/fixtures/cluster/pod-secrets-short.json}
TOOLS=${TOOLS:-$HOME/.cache/runsecrets/tools}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/runsecrets/target}

OHA="$TOOLS/bin/oha"
if [ ! -x "$OHA" ]; then
  cargo install oha --locked --root "$TOOLS"
fi
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked --quiet
  BIN="$CARGO_TARGET_DIR/release/runsecrets"
fi

WORK=$(mktemp -d)
RESULTS="$WORK/results.jsonl"
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# The fixture's pod declares shop/mysql_root_password: store it, as a user would first.
printf 'bench-root-password' | "$BIN" secret create --store "file:$WORK/data" -n shop mysql_root_password - >/dev/null

RUST_LOG=warn taskset -c 0 "$BIN" server --listen "127.0.0.1:$PORT" \
  --admin-listen "127.0.0.1:$ADMIN_PORT" --delivery-listen 127.0.0.1:0 --data-dir "$WORK/data" &
PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 1
# HTTP 200 is also how a denial arrives: make sure the measured answer is the injection.
curl -fsSk -H 'Content-Type: application/json' --data-binary @"$FIXTURE" \
  "https://127.0.0.1:$PORT/mutate" | grep -q '"patchType":"JSONPatch"' \
  || { echo "load.sh: /mutate does not inject for $FIXTURE" >&2; exit 1; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
echo "{\"kind\": \"rss_idle_kib\", \"value\": $(rss_kib)}" >> "$RESULTS"

URL="https://127.0.0.1:$PORT"
run() { # name, extra oha args...
  local name=$1; shift
  taskset -c 1 "$OHA" --no-tui --insecure --output-format json -z "${SECONDS_PER_RUN}s" "$@" \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'kind': '$name', 'rps': d['summary']['requestsPerSec'], 'success': d['summary']['successRate'], 'p50': d['latencyPercentiles']['p50'], 'p99': d['latencyPercentiles']['p99'], 'codes': d['statusCodeDistribution']}))" \
    >> "$RESULTS"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  run max_mutate -c 32 -m POST -T application/json -D "$FIXTURE" "$URL/mutate?timeout=5s"
  run max_livez -c 32 "$URL/livez"
  run fixed_livez -c 8 -q "$RATE" "$URL/livez"
  run fixed_mutate -c 8 -q "$RATE" -m POST -T application/json -D "$FIXTURE" "$URL/mutate?timeout=5s"
done
echo "{\"kind\": \"rss_peak_kib\", \"value\": $(awk '/^VmHWM/ {print $2}' "/proc/$PID/status")}" >> "$RESULTS"
sleep 2
echo "{\"kind\": \"rss_after_kib\", \"value\": $(rss_kib)}" >> "$RESULTS"

python3 - "$RESULTS" "$RATE" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rate = sys.argv[2]
def med(kind, key):
    return statistics.median(r[key] for r in rows if r["kind"] == kind)
def one(kind):
    return next(r["value"] for r in rows if r["kind"] == kind)
bad = [r for r in rows if "codes" in r and set(r["codes"]) - {"200"}]
ms = lambda s: f"{s * 1000:.3f} ms"
print(f"rounds: {sum(1 for r in rows if r['kind'] == 'max_mutate')} (medians below)")
print(f"max throughput  /mutate: {med('max_mutate', 'rps'):8.0f} req/s   /livez: {med('max_livez', 'rps'):8.0f} req/s   ratio {med('max_mutate', 'rps') / med('max_livez', 'rps'):.2f}")
for p in ("p50", "p99"):
    m, l = med("fixed_mutate", p), med("fixed_livez", p)
    print(f"{rate}/s {p}: /mutate {ms(m)}   /livez {ms(l)}   ratio {m / l:.2f}")
print(f"RSS idle {one('rss_idle_kib') / 1024:.1f} MiB, peak under load {one('rss_peak_kib') / 1024:.1f} MiB, after {one('rss_after_kib') / 1024:.1f} MiB")
print("non-200 answers:", bad if bad else "none")
PY
