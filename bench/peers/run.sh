#!/usr/bin/env bash
# authd side by side with what users would pick instead, on this machine, in one command:
#
#   bench/peers/run.sh            (as root: installs redis-server and postgresql if missing)
#
# The same authorization everywhere: check that the payer's balance covers the amount and
# debit it, durable before the answer.
#   * Redis: a Lua script (EVALSHA) with appendonly yes + appendfsync always, driven by
#     redis-benchmark (many clients, pipelining; the best of a few settings is kept).
#   * PostgreSQL: UPDATE accounts SET balance = balance - :amount WHERE id = :id AND
#     balance >= :amount, synchronous_commit on, driven by pgbench -c/-j with a custom script
#     (the best of a few client counts is kept).
#   * authd: loadgen --spawn against a release authd with --fsync always, purchases.
# Each loads ACCOUNTS accounts, runs DURATION seconds, and everything is stopped and removed
# afterwards. Prints one table: throughput, p50, p99, and authd's throughput as a multiple.
#
# Environment: ACCOUNTS (100000), DURATION (30 s), RESULTS (directory for JSON/plots; unset:
# none kept), AUTHD_FLAGS (loadgen flags for the authd run).
set -euo pipefail

ACCOUNTS=${ACCOUNTS:-100000}
DURATION=${DURATION:-30}
AUTHD_FLAGS=${AUTHD_FLAGS:---connections 16 --pipeline 256 --threads 1}
REDIS_PORT=${REDIS_PORT:-6391}
PG_PORT=${PG_PORT:-5441}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/authd-peers.XXXXXX)
chmod 755 "$WORK"
REDIS_PID=""
PG_DATA="$WORK/pg"

log() { echo "peers: $*" >&2; }

cleanup() {
  if [[ -n "$REDIS_PID" ]] && kill -0 "$REDIS_PID" 2>/dev/null; then
    kill -TERM "$REDIS_PID" || true
    while kill -0 "$REDIS_PID" 2>/dev/null; do sleep 0.1; done
  fi
  if [[ -f "$PG_DATA/postmaster.pid" ]]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

install_if_missing() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-benchmark >/dev/null || missing+=(redis-tools)
  ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || missing+=(postgresql postgresql-contrib)
  if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
      echo "peers: need ${missing[*]}; run as root (or install them) first" >&2
      exit 1
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -1)")
}

# ---- Redis ---------------------------------------------------------------------------------
redis_bench() {
  mkdir -p "$WORK/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --appendonly yes \
    --appendfsync always --save "" --protected-mode no --daemonize no \
    --logfile "$WORK/redis/redis.log" &
  REDIS_PID=$!
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  # Keys as redis-benchmark's __rand_int__ spells them: 12 digits, zero padded.
  redis-cli -p "$REDIS_PORT" EVAL \
    "for i = 0, tonumber(ARGV[1]) - 1 do redis.call('SET', string.format('acct:%012d', i), ARGV[2]) end return 1" \
    0 "$ACCOUNTS" 1000000000000 >/dev/null
  local sha
  sha=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD \
    "local b = tonumber(redis.call('GET', KEYS[1])) local a = tonumber(ARGV[1]) if b == nil then return -1 end if b < a then return 0 end redis.call('DECRBY', KEYS[1], a) return 1")
  local best="" best_rps=0
  # Try settings for about DURATION / 3 seconds each (the rate of a short trial says how many
  # requests that is); keep the fastest.
  for setting in "-c 50 -P 1" "-c 64 -P 16" "-c 128 -P 32" "-c 256 -P 64" "-c 256 -P 128"; do
    local trial rps requests line
    trial=$(redis-benchmark -p "$REDIS_PORT" $setting -r "$ACCOUNTS" -n 20000 --csv \
      EVALSHA "$sha" 1 acct:__rand_int__ 250 | tail -1)
    rps=$(echo "$trial" | cut -d, -f2 | tr -d '"')
    requests=$(awk -v r="$rps" -v d="$DURATION" 'BEGIN { printf "%d", r * d / 3 }')
    line=$(redis-benchmark -p "$REDIS_PORT" $setting -r "$ACCOUNTS" -n "$requests" --csv \
      EVALSHA "$sha" 1 acct:__rand_int__ 250 | tail -1)
    rps=$(echo "$line" | cut -d, -f2 | tr -d '"')
    log "redis $setting: $line"
    if awk -v a="$rps" -v b="$best_rps" 'BEGIN { exit !(a > b) }'; then best_rps=$rps; best="$line|$setting"; fi
  done
  # The measured run: the best setting for about DURATION seconds.
  REDIS_SETTING=${best##*|}
  local requests
  requests=$(awk -v r="$best_rps" -v d="$DURATION" 'BEGIN { printf "%d", r * d }')
  # shellcheck disable=SC2086
  best=$(redis-benchmark -p "$REDIS_PORT" $REDIS_SETTING -r "$ACCOUNTS" -n "$requests" --csv \
    EVALSHA "$sha" 1 acct:__rand_int__ 250 | tail -1)
  log "redis measured $REDIS_SETTING: $best"
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  REDIS_RPS=$(echo "$best" | cut -d, -f2 | tr -d '"')
  REDIS_P50_US=$(echo "$best" | cut -d, -f5 | tr -d '"' | awk '{ printf "%.0f", $1 * 1000 }')
  REDIS_P99_US=$(echo "$best" | cut -d, -f7 | tr -d '"' | awk '{ printf "%.0f", $1 * 1000 }')
  kill -TERM "$REDIS_PID"
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=""
}

# ---- PostgreSQL ----------------------------------------------------------------------------
pg_bench() {
  mkdir -p "$PG_DATA" "$WORK/pgsock"
  chown postgres "$PG_DATA" "$WORK/pgsock"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -A trust >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -l "$WORK/pgsock/pg.log" start -o \
    "-p $PG_PORT -k $WORK/pgsock -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on \
     -c shared_buffers=512MB -c max_connections=300 -c wal_buffers=64MB -c max_wal_size=8GB \
     -c checkpoint_timeout=30min" >/dev/null
  local psql=(runuser -u postgres -- psql -q -h "$WORK/pgsock" -p "$PG_PORT" -d postgres)
  "${psql[@]}" -c "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL) WITH (fillfactor = 50)" \
    -c "INSERT INTO accounts SELECT i, 1000000000000 FROM generate_series(1, $ACCOUNTS) i" \
    -c "VACUUM ANALYZE accounts"
  cat >"$WORK/pgsock/debit.sql" <<'SQL'
\set id random(1, :accounts)
\set amount random(100, 9999)
UPDATE accounts SET balance = balance - :amount WHERE id = :id AND balance >= :amount;
SQL
  chown postgres "$WORK/pgsock/debit.sql"
  local best_tps=0 best_clients=0
  for clients in 16 64 128; do
    local out tps
    out=$(cd "$WORK/pgsock" && runuser -u postgres -- "$PG_BIN/pgbench" -n -M prepared -h "$WORK/pgsock" \
      -p "$PG_PORT" -c "$clients" -j 2 -T "$((DURATION / 3 > 5 ? DURATION / 3 : 5))" \
      -D accounts="$ACCOUNTS" -f "$WORK/pgsock/debit.sql" postgres 2>&1)
    tps=$(echo "$out" | awk '/^tps = / { print $3 }')
    log "postgres $clients clients: $tps tps"
    if awk -v a="$tps" -v b="$best_tps" 'BEGIN { exit !(a > b) }'; then best_tps=$tps; best_clients=$clients; fi
  done
  # The measured run, with per-transaction latencies logged for percentiles.
  rm -f "$WORK"/pgsock/pgbench_log.*
  local out
  out=$(cd "$WORK/pgsock" && runuser -u postgres -- "$PG_BIN/pgbench" -n -M prepared -h "$WORK/pgsock" \
    -p "$PG_PORT" -c "$best_clients" -j 2 -T "$DURATION" -l --log-prefix="$WORK/pgsock/pgbench_log" \
    -D accounts="$ACCOUNTS" -f "$WORK/pgsock/debit.sql" postgres 2>&1)
  PG_TPS=$(echo "$out" | awk '/^tps = / { print $3 }')
  # Log lines: client transaction latency_us script epoch_s epoch_us.
  cat "$WORK"/pgsock/pgbench_log.* | awk '{ print $3 }' | sort -n >"$WORK/pgsock/latencies"
  local count
  count=$(wc -l <"$WORK/pgsock/latencies")
  PG_P50_US=$(sed -n "$((count / 2 + 1))p" "$WORK/pgsock/latencies")
  PG_P99_US=$(sed -n "$((count * 99 / 100 + 1))p" "$WORK/pgsock/latencies")
  PG_SETTING="-c $best_clients -j 2"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
}

# ---- authd ---------------------------------------------------------------------------------
authd_bench() {
  (cd "$ROOT" && cargo build --release -q -p engine -p loadgen)
  local json="$WORK/authd.json" extra=()
  if [[ -n "${RESULTS:-}" ]]; then
    mkdir -p "$RESULTS"
    extra=(--plot "$RESULTS/peers-authd.svg" --hgrm "$RESULTS/peers-authd.hgrm" --title "authd, fsync always")
    json="$RESULTS/peers-authd.json"
  fi
  # shellcheck disable=SC2086
  "$ROOT/target/release/loadgen" --spawn --fsync always --payers "$ACCOUNTS" --mix purchase=100 \
    --duration "$DURATION" --warmup 2 --quiet $AUTHD_FLAGS --json "$json" "${extra[@]}" >&2
  AUTHD_RPS=$(awk -F': ' '/"ops_per_s"/ { gsub(",", "", $2); print $2 }' "$json")
  AUTHD_P50_US=$(grep -A3 '"latency_us"' "$json" | awk -F': ' '/"p50"/ { gsub(",", "", $2); printf "%.0f", $2 }')
  AUTHD_P99_US=$(grep -A8 '"latency_us"' "$json" | awk -F': ' '/"p99"/ { gsub(",", "", $2); printf "%.0f", $2 }')
}

install_if_missing
log "machine: $(nproc) cores, $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
redis_bench
pg_bench
authd_bench

ratio() { awk -v a="$AUTHD_RPS" -v b="$1" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }'; }
printf '\n%-40s %14s %10s %10s %10s\n' "system (durable on every write)" "authorizations/s" "p50 us" "p99 us" "authd is"
printf '%-40s %14.0f %10s %10s %10s\n' "authd, fsync always (loadgen)" "$AUTHD_RPS" "$AUTHD_P50_US" "$AUTHD_P99_US" "1.0x"
printf '%-40s %14.0f %10s %10s %10s\n' "Redis Lua, appendfsync always ($REDIS_SETTING)" "$REDIS_RPS" "$REDIS_P50_US" "$REDIS_P99_US" "$(ratio "$REDIS_RPS")"
printf '%-40s %14.0f %10s %10s %10s\n' "PostgreSQL UPDATE, sync commit ($PG_SETTING)" "$PG_TPS" "$PG_P50_US" "$PG_P99_US" "$(ratio "$PG_TPS")"
