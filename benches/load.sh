#!/usr/bin/env bash
# HTTPS load benchmark of `runsecrets server` with oha (from crates.io), on 127.0.0.1 only.
#
# The server is pinned to core 0 and oha to core 1 (taskset), keep-alive TLS. The baseline in
# the same run is the bare floor (examples/load_floor.rs): rustls + hyper on the same runtime and
# certificate, reading each body whole and answering the bytes `/mutate` answered for the same
# body, also on core 0, measured with the same oha arguments. `GET /livez` on the server's TLS
# listener is measured too (the server's cost per request without a body or a review).
#
#   benches/load.sh                # 3 rounds of 10 s per measurement
#   ROUNDS=1 SECONDS_PER_RUN=5 benches/load.sh
#   BIN=/path/to/runsecrets benches/load.sh   # another build (A/B against an older commit)
#   PROFILE=/tmp/mutate.txt benches/load.sh   # also: perf's flat profile of the server under
#                                             # /mutate at full load (needs `perf`, linux-perf)
#
# Needs: cargo, python3, curl, taskset (util-linux). Installs oha into $TOOLS if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
RATE=${RATE:-1000}
PORT=${PORT:-18443}
FLOOR_PORT=${FLOOR_PORT:-18444}
ADMIN_PORT=${ADMIN_PORT:-18080}
FIXTURE=${FIXTURE:-tests/fixtures/cluster/pod-secrets-short.json}
TOOLS=${TOOLS:-$HOME/.cache/runsecrets/tools}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/runsecrets/target}

OHA="$TOOLS/bin/oha"
if [ ! -x "$OHA" ]; then
  cargo install oha --locked --root "$TOOLS"
fi
if [ -z "${BIN:-}" ] || [ -z "${FLOOR_BIN:-}" ]; then
  cargo build --release --locked --quiet --bin runsecrets --example load_floor
fi
BIN=${BIN:-$CARGO_TARGET_DIR/release/runsecrets}
FLOOR_BIN=${FLOOR_BIN:-$CARGO_TARGET_DIR/release/examples/load_floor}

WORK=$(mktemp -d)
RESULTS="$WORK/results.jsonl"
cleanup() {
  for pid in ${PID:-} ${FLOOR_PID:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
echo "{\"kind\": \"loadavg_start\", \"value\": \"$(loadavg)\"}" >> "$RESULTS"

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
# HTTP 200 is also how a denial arrives: make sure the measured answer is the injection. The
# floor answers the same bytes.
curl -fsSk -H 'Content-Type: application/json' --data-binary @"$FIXTURE" \
  "https://127.0.0.1:$PORT/mutate" -o "$WORK/answer.json"
grep -q '"patchType":"JSONPatch"' "$WORK/answer.json" \
  || { echo "load.sh: /mutate does not inject for $FIXTURE" >&2; exit 1; }

# The floor stops by itself well after the last run (the trap kills it sooner).
taskset -c 0 "$FLOOR_BIN" "127.0.0.1:$FLOOR_PORT" "$WORK/data/tls/tls.crt" "$WORK/data/tls/tls.key" \
  "$WORK/answer.json" $((ROUNDS * SECONDS_PER_RUN * 6 + 300)) &
FLOOR_PID=$!
for _ in $(seq 1 100); do
  curl -fsSk --data-binary @"$FIXTURE" "https://127.0.0.1:$FLOOR_PORT/mutate" -o "$WORK/floor.json" \
    2>/dev/null && break
  sleep 0.1
done
cmp -s "$WORK/answer.json" "$WORK/floor.json" \
  || { echo "load.sh: the floor does not answer what /mutate answered" >&2; exit 1; }

# VmRSS counts the binary's pages in the page cache that happen to be mapped, which depends on
# how the kernel holds the file (a fresh copy of the same binary can show 2 MiB more); RssAnon,
# the process's own memory, is what a change of code moves.
rss_kib() { awk "/^$2:/ {print \$2}" "/proc/$1/status"; }
echo "{\"kind\": \"rss_idle_kib\", \"value\": $(rss_kib "$PID" VmRSS)}" >> "$RESULTS"
echo "{\"kind\": \"anon_idle_kib\", \"value\": $(rss_kib "$PID" RssAnon)}" >> "$RESULTS"
echo "{\"kind\": \"floor_rss_idle_kib\", \"value\": $(rss_kib "$FLOOR_PID" VmRSS)}" >> "$RESULTS"

URL="https://127.0.0.1:$PORT"
FLOOR="https://127.0.0.1:$FLOOR_PORT"
MUTATE=(-m POST -T application/json -D "$FIXTURE")
# CPU time (user + system, clock ticks) the process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_HZ=$(getconf CLK_TCK)
run() { # name, pid of the server measured, extra oha args...
  local name=$1 pid=$2; shift 2
  local before; before=$(cpu_ticks "$pid")
  taskset -c 1 "$OHA" --no-tui --insecure --output-format json -z "${SECONDS_PER_RUN}s" "$@" > "$WORK/oha.json"
  local ticks=$(( $(cpu_ticks "$pid") - before ))
  python3 -c "import json,sys; d=json.load(open('$WORK/oha.json')); s=d['summary']; n=s['requestsPerSec']*s['total']; print(json.dumps({'kind': '$name', 'rps': s['requestsPerSec'], 'success': s['successRate'], 'p50': d['latencyPercentiles']['p50'], 'p99': d['latencyPercentiles']['p99'], 'codes': d['statusCodeDistribution'], 'cpu_us': $ticks / $TICK_HZ * 1e6 / n if n else None}))" \
    >> "$RESULTS"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS (load average $(loadavg))" >&2
  run max_mutate "$PID" -c 32 "${MUTATE[@]}" "$URL/mutate?timeout=5s"
  run max_floor "$FLOOR_PID" -c 32 "${MUTATE[@]}" "$FLOOR/mutate?timeout=5s"
  run max_livez "$PID" -c 32 "$URL/livez"
  run fixed_floor "$FLOOR_PID" -c 8 -q "$RATE" "${MUTATE[@]}" "$FLOOR/mutate?timeout=5s"
  run fixed_mutate "$PID" -c 8 -q "$RATE" "${MUTATE[@]}" "$URL/mutate?timeout=5s"
done
echo "{\"kind\": \"rss_peak_kib\", \"value\": $(rss_kib "$PID" VmHWM)}" >> "$RESULTS"
echo "{\"kind\": \"floor_rss_peak_kib\", \"value\": $(rss_kib "$FLOOR_PID" VmHWM)}" >> "$RESULTS"
sleep 2
echo "{\"kind\": \"rss_after_kib\", \"value\": $(rss_kib "$PID" VmRSS)}" >> "$RESULTS"
echo "{\"kind\": \"anon_after_kib\", \"value\": $(rss_kib "$PID" RssAnon)}" >> "$RESULTS"
echo "{\"kind\": \"loadavg_end\", \"value\": \"$(loadavg)\"}" >> "$RESULTS"

if [ -n "${PROFILE:-}" ]; then
  # Samples of the server process only, while oha drives /mutate as in max_mutate.
  perf record -q -e cpu-clock -F 999 -o "$WORK/perf.data" -p "$PID" -- sleep "$SECONDS_PER_RUN" &
  PERF_PID=$!
  taskset -c 1 "$OHA" --no-tui --insecure -z "${SECONDS_PER_RUN}s" -c 32 "${MUTATE[@]}" \
    "$URL/mutate?timeout=5s" >/dev/null
  wait "$PERF_PID"
  perf report -q -i "$WORK/perf.data" --no-children --sort dso,symbol --percent-limit 0.05 \
    --stdio > "$PROFILE" 2>/dev/null
  echo "profile: $PROFILE" >&2
fi

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
mib = lambda kind: f"{one(kind) / 1024:.1f} MiB"
floor = med("max_floor", "rps")
print(f"rounds: {sum(1 for r in rows if r['kind'] == 'max_mutate')} (medians below); load average {one('loadavg_start')} at the start, {one('loadavg_end')} at the end")
print(f"max throughput, 32 connections: /mutate {med('max_mutate', 'rps'):8.0f} req/s   floor {floor:8.0f} req/s   ratio {med('max_mutate', 'rps') / floor:.2f}")
print(f"                                /livez  {med('max_livez', 'rps'):8.0f} req/s   ratio to the floor {med('max_livez', 'rps') / floor:.2f}")
cpu, floor_cpu = med("max_mutate", "cpu_us"), med("max_floor", "cpu_us")
print(f"CPU per request at max throughput:  /mutate {cpu:.1f} us   floor {floor_cpu:.1f} us   ratio {cpu / floor_cpu:.2f}   (/livez {med('max_livez', 'cpu_us'):.1f} us)")
for p in ("p50", "p99"):
    m, f = med("fixed_mutate", p), med("fixed_floor", p)
    print(f"{rate} req/s, 8 connections, {p}: /mutate {ms(m)}   floor {ms(f)}   ratio {m / f:.2f}")
print(f"server VmRSS idle {mib('rss_idle_kib')}, peak under load {mib('rss_peak_kib')}, after {mib('rss_after_kib')}; RssAnon idle {mib('anon_idle_kib')}, after {mib('anon_after_kib')}")
print(f"floor VmRSS idle {mib('floor_rss_idle_kib')}, peak {mib('floor_rss_peak_kib')}")
print("non-200 answers:", bad if bad else "none")
PY
