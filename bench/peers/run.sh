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
# Amounts: Redis debits a fixed 250 per request (redis-benchmark can only substitute random
# keys, and a fixed amount lets the script check the debits exactly); PostgreSQL debits a
# random 100-9999 and authd's purchases carry loadgen's random amounts. Every balance starts
# far above what a run can debit, so no authorization is declined anywhere.
# Each loads ACCOUNTS accounts, runs DURATION seconds, and everything is stopped and removed
# afterwards. Prints one table: throughput, p50, p99, and authd's throughput as a multiple.
#
# Checks, each failing the run with a message: root, ports free, the Redis answering is the
# one started here with appendfsync always, PostgreSQL's synchronous_commit and fsync are on,
# and after each measured run that the work was done: Redis's EVALSHA calls (INFO
# commandstats) cover redis-benchmark's requests with no failed calls and the balances fell by
# exactly 250 per call; PostgreSQL's balances fell by 100-9999 per transaction pgbench
# counted; loadgen saw no errors and its books check passed.
#
# Package installs: the packages' own services (Redis on 6379, PostgreSQL on 5432) are kept
# from starting by a temporary /usr/sbin/policy-rc.d (exit 101) unless one already exists;
# anything the install started anyway is stopped. The packages stay installed.
#
# Environment: ACCOUNTS (100000), DURATION (30, whole seconds), RESULTS (directory for the
# authd run's JSON/plot/hgrm; unset: none kept), AUTHD_FLAGS (loadgen flags for the authd run),
# REDIS_PORT (6391), PG_PORT (5441), BUILD (auto: cargo build when cargo is on PATH, a no-op if
# the binaries are fresh, else use target/release/authd and loadgen as they are, warning if
# sources changed since; 1: always build; 0: never).
set -euo pipefail

ACCOUNTS=${ACCOUNTS:-100000}
DURATION=${DURATION:-30}
AUTHD_FLAGS=${AUTHD_FLAGS:---connections 16 --pipeline 256 --threads 1}
REDIS_PORT=${REDIS_PORT:-6391}
PG_PORT=${PG_PORT:-5441}
BUILD=${BUILD:-auto}
RESULTS=${RESULTS:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BALANCE=1000000000000 # every account's opening balance, everywhere
REDIS_AMOUNT=250      # Redis's fixed debit

WORK=""       # the run's own directory: data dirs, logs, loadgen's TMPDIR; removed at exit
REDIS_PID=""  # our redis-server
PG_BIN=""
PG_DATA=""
CHILD=""      # the benchmark tool running now, leader of its own process group
POLICY_RC=""  # the policy-rc.d this script wrote, to remove

log() { echo "peers: $*" >&2; }
die() {
  echo "peers: error: $*" >&2
  exit 1
}

# ---- cleanup -------------------------------------------------------------------------------
# A process group is alive while any of its processes is not a zombie.
group_alive() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'; }

# Stops process group $1 (a tool started by run, and what it started: loadgen's authd):
# TERM, then KILL after 10 s.
stop_group() {
  kill -TERM -- "-$1" 2>/dev/null
  for _ in $(seq 100); do group_alive "$1" || break; sleep 0.1; done
  if group_alive "$1"; then
    kill -KILL -- "-$1" 2>/dev/null
    for _ in $(seq 50); do group_alive "$1" || break; sleep 0.1; done
  fi
  wait "$1" 2>/dev/null
}

cleanup() {
  local rc=$?
  set +e
  trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
  if [[ -n $CHILD ]]; then
    log "stopping ${CHILD_NAME:-the running benchmark} (process group $CHILD)"
    stop_group "$CHILD"
  fi
  if [[ -n $REDIS_PID ]] && kill -0 "$REDIS_PID" 2>/dev/null; then
    kill -TERM "$REDIS_PID"
    for _ in $(seq 100); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$REDIS_PID" 2>/dev/null
    wait "$REDIS_PID" 2>/dev/null
  fi
  if [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1
  fi
  if [[ -n $POLICY_RC ]]; then rm -f "$POLICY_RC"; fi
  if ((rc != 0 && rc != 130 && rc != 143)) && [[ -n $WORK ]]; then
    local f
    for f in "$WORK/redis/redis.log" "$WORK/pgsock/pg.log"; do
      if [[ -s $f ]]; then
        echo "peers: last lines of ${f##*/}:" >&2
        tail -n 20 "$f" | sed 's/^/    /' >&2
      fi
    done
  fi
  cd /
  if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs "$@" in a session (and process group) of its own, in the background, and waits for it.
# bash runs a trap only once the foreground command is done; waiting on a background one lets
# Ctrl-C or TERM act at once, and cleanup stops the tool with whatever it started.
run() {
  CHILD_NAME=${1##*/}
  setsid "$@" &
  CHILD=$!
  local rc=0
  wait "$CHILD" || rc=$?
  # The tool is done; anything it started and left (loadgen killed before stopping its authd)
  # is stopped here, before its files are removed.
  if group_alive "$CHILD"; then stop_group "$CHILD"; fi
  CHILD=""
  return "$rc"
}

# Whether something accepts TCP connections on 127.0.0.1:$1.
# shellcheck disable=SC2016 # $1 is the inner shell's
port_answers() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

# ---- prerequisites (before any work) -------------------------------------------------------
preflight() {
  [[ $(id -u) -eq 0 ]] ||
    die "run as root: the script installs Redis/PostgreSQL if missing and runs PostgreSQL as the postgres user (runuser, chown)"
  [[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a whole number of seconds (got '$DURATION')"
  [[ $ACCOUNTS =~ ^[1-9][0-9]*$ ]] || die "ACCOUNTS must be a positive whole number (got '$ACCOUNTS')"
  local name port
  for name in REDIS_PORT PG_PORT; do
    port=${!name}
    [[ $port =~ ^[1-9][0-9]*$ && $port -lt 65536 ]] || die "$name must be a TCP port number (got '$port')"
    if port_answers "$port"; then
      die "port $port on 127.0.0.1 already answers (another server is listening there); choose a free port with $name=<port>"
    fi
  done
  [[ $REDIS_PORT != "$PG_PORT" ]] || die "REDIS_PORT and PG_PORT are both $PG_PORT"
  local tool
  for tool in runuser setsid timeout ps awk sort; do
    command -v "$tool" >/dev/null || die "$tool not found"
  done
  case $BUILD in
    0 | 1 | auto) ;;
    *) die "BUILD must be auto, 1 or 0 (got '$BUILD')" ;;
  esac
  local missing=0
  [[ -x $ROOT/target/release/authd && -x $ROOT/target/release/loadgen ]] || missing=1
  if [[ $BUILD == 1 ]] || ((missing)); then
    [[ $BUILD != 0 ]] || die "BUILD=0 but $ROOT/target/release/authd or loadgen is missing"
    command -v cargo >/dev/null ||
      die "cargo not found (root's PATH?), needed to build authd and loadgen: build them first (cargo build --release -p engine -p loadgen) or put cargo on PATH"
  fi
}

install_if_missing() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  { command -v redis-benchmark && command -v redis-cli; } >/dev/null || missing+=(redis-tools)
  ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || missing+=(postgresql postgresql-contrib)
  command -v python3 >/dev/null || missing+=(python3)
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "missing ${missing[*]}, and no apt-get here: install them first"
    local redis_before=0 pg_before=0
    port_answers 6379 && redis_before=1
    port_answers 5432 && pg_before=1
    if [[ -e /usr/sbin/policy-rc.d ]]; then
      log "installing ${missing[*]} (/usr/sbin/policy-rc.d already exists: left as it is)"
    else
      POLICY_RC=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\n# bench/peers/run.sh: no services started while it installs packages\nexit 101\n' >"$POLICY_RC"
      chmod 755 "$POLICY_RC"
      log "installing ${missing[*]}, with a temporary /usr/sbin/policy-rc.d (exit 101) so that the packages' services do not start"
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    if [[ -n $POLICY_RC ]]; then
      rm -f "$POLICY_RC"
      POLICY_RC=""
    fi
    if ((!redis_before)) && port_answers 6379; then
      log "the install started Redis on port 6379: stopping it (service redis-server stop)"
      service redis-server stop >/dev/null 2>&1 || log "could not stop it: stop it by hand"
    fi
    if ((!pg_before)) && port_answers 5432; then
      log "the install started PostgreSQL on port 5432: stopping it (service postgresql stop)"
      service postgresql stop >/dev/null 2>&1 || log "could not stop it: stop it by hand"
    fi
    log "installed; the packages' own services are not running (under systemd they stay enabled for the next boot)"
  fi
  command -v python3 >/dev/null || die "python3 not found"
  # shellcheck disable=SC2012 # fixed Debian paths
  PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -1)")
}

build_if_needed() {
  local authd=$ROOT/target/release/authd loadgen=$ROOT/target/release/loadgen
  if [[ $BUILD == 1 ]] || [[ ! -x $authd || ! -x $loadgen ]] ||
    { [[ $BUILD == auto ]] && command -v cargo >/dev/null; }; then
    log "building authd and loadgen (cargo build --release -p engine -p loadgen)"
    (cd "$ROOT" && cargo build --release -q -p engine -p loadgen)
    return
  fi
  # Not rebuilt: say so if sources changed since.
  local newer
  newer=$(cd "$ROOT" && {
    find engine wire Cargo.toml Cargo.lock -newer "$authd" \( -name '*.rs' -o -name 'Cargo.*' \) -print
    find loadgen wire Cargo.toml Cargo.lock -newer "$loadgen" \( -name '*.rs' -o -name 'Cargo.*' \) -print
  } 2>/dev/null | sort -u | head -3 | tr '\n' ' ')
  log "using the existing target/release/authd and loadgen (BUILD=$BUILD; cargo on PATH or BUILD=1 rebuilds)"
  if [[ -n $newer ]]; then log "warning: sources changed since they were built: ${newer}..."; fi
}

# ---- Redis ---------------------------------------------------------------------------------
redis_cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
redis_info() { redis_cli INFO "$1" | tr -d '\r' | awk -F: -v k="$2" '$1 == k { print $2 }'; }

# "rps p50_us p99_us" from redis-benchmark's --csv output; p50/p99 are n/a where the CSV has no
# such columns (redis-benchmark before 6.2 writes only "test","rps", without a header).
redis_csv() {
  python3 - "$1" <<'PY'
import csv, sys
rows = [row for row in csv.reader(open(sys.argv[1])) if row]
header = next((row for row in rows if "rps" in row), None)
if header is None:
    data = [row for row in rows if len(row) == 2]
    if not data:
        sys.exit("no results in redis-benchmark's output: %r" % rows[-3:])
    print("%.2f n/a n/a" % float(data[-1][1]))
    sys.exit()
col = {name: i for i, name in enumerate(header)}
data = [row for row in rows if row is not header and len(row) == len(header)]
if not data:
    sys.exit("no results in redis-benchmark's output: %r" % rows[-3:])
def us(name):
    return "%.0f" % (float(data[-1][col[name]]) * 1000) if name in col else "n/a"
print("%.2f %s %s" % (float(data[-1][col["rps"]]), us("p50_latency_ms"), us("p99_latency_ms")))
PY
}

# The total debited from all the accounts so far.
redis_debited() {
  redis_cli EVAL "local s = 0 for i = 0, tonumber(ARGV[1]) - 1 do
      s = s + (tonumber(ARGV[2]) - tonumber(redis.call('GET', string.format('acct:%012d', i)))) end
    return s" 0 "$ACCOUNTS" "$BALANCE"
}

# One redis-benchmark run: setting (word split), requests, CSV file.
redis_run() {
  [[ $2 =~ ^[1-9][0-9]*$ ]] || die "bad request count '$2' for redis-benchmark"
  # shellcheck disable=SC2086
  run redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" $1 -r "$ACCOUNTS" -n "$2" --csv \
    EVALSHA "$REDIS_SHA" 1 acct:__rand_int__ "$REDIS_AMOUNT" >"$3" || die "redis-benchmark $1 failed"
}

redis_bench() {
  mkdir -p "$WORK/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --appendonly yes \
    --appendfsync always --save "" --protected-mode no --daemonize no \
    --logfile "$WORK/redis/redis.log" &
  REDIS_PID=$!
  local up=0
  for _ in $(seq 100); do
    kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited at start (see its log below)"
    if [[ $(redis_cli ping 2>/dev/null) == PONG ]]; then
      up=1
      break
    fi
    sleep 0.1
  done
  ((up)) || die "redis-server did not answer on 127.0.0.1:$REDIS_PORT within 10 s"
  local pid fsync aof
  pid=$(redis_info server process_id)
  [[ $pid == "$REDIS_PID" ]] ||
    die "the Redis answering on 127.0.0.1:$REDIS_PORT is not the one started here (its pid ${pid:-?}, ours $REDIS_PID); choose a free port with REDIS_PORT=<port>"
  fsync=$(redis_cli CONFIG GET appendfsync | tr -d '\r' | tail -1)
  aof=$(redis_cli CONFIG GET appendonly | tr -d '\r' | tail -1)
  log "redis $(redis_info server redis_version), pid $pid on 127.0.0.1:$REDIS_PORT: appendonly $aof, appendfsync $fsync"
  [[ $fsync == always && $aof == yes ]] || die "Redis is not durable on every write (appendonly $aof, appendfsync $fsync)"
  # Keys as redis-benchmark's __rand_int__ spells them: 12 digits, zero padded.
  redis_cli EVAL \
    "for i = 0, tonumber(ARGV[1]) - 1 do redis.call('SET', string.format('acct:%012d', i), ARGV[2]) end return 1" \
    0 "$ACCOUNTS" "$BALANCE" >/dev/null
  REDIS_SHA=$(redis_cli SCRIPT LOAD \
    "local b = tonumber(redis.call('GET', KEYS[1])) local a = tonumber(ARGV[1]) if b == nil then return -1 end if b < a then return 0 end redis.call('DECRBY', KEYS[1], a) return 1")
  [[ $REDIS_SHA =~ ^[0-9a-f]{40}$ ]] || die "SCRIPT LOAD answered '$REDIS_SHA'"
  local best_rps=0 setting vals rps requests csv=$WORK/redis/out.csv
  REDIS_SETTING=""
  # Try settings for about DURATION / 3 seconds each (the rate of a short trial says how many
  # requests that is); keep the fastest.
  for setting in "-c 50 -P 1" "-c 64 -P 16" "-c 128 -P 32" "-c 256 -P 64" "-c 256 -P 128"; do
    redis_run "$setting" 20000 "$csv"
    vals=$(redis_csv "$csv")
    read -r rps _ _ <<<"$vals"
    requests=$(awk -v r="$rps" -v d="$DURATION" 'BEGIN { n = int(r * d / 3); print (n > 1000 ? n : 1000) }')
    redis_run "$setting" "$requests" "$csv"
    vals=$(redis_csv "$csv")
    read -r rps _ _ <<<"$vals"
    log "redis $setting: $rps requests/s"
    if awk -v a="$rps" -v b="$best_rps" 'BEGIN { exit !(a > b) }'; then
      best_rps=$rps
      REDIS_SETTING=$setting
    fi
  done
  [[ -n $REDIS_SETTING ]] || die "redis-benchmark measured no throughput in any setting"
  # The measured run: the best setting for about DURATION seconds, then check that every
  # request ran the script and debited.
  requests=$(awk -v r="$best_rps" -v d="$DURATION" 'BEGIN { n = int(r * d); print (n > 1000 ? n : 1000) }')
  local before after
  before=$(redis_debited)
  redis_cli CONFIG RESETSTAT >/dev/null
  redis_run "$REDIS_SETTING" "$requests" "$csv"
  after=$(redis_debited)
  vals=$(redis_csv "$csv")
  read -r REDIS_RPS REDIS_P50_US REDIS_P99_US <<<"$vals"
  log "redis measured $REDIS_SETTING: $REDIS_RPS requests/s, p50 $REDIS_P50_US us, p99 $REDIS_P99_US us"
  if [[ $REDIS_P50_US == n/a ]]; then
    log "warning: this redis-benchmark ($(redis-benchmark --version 2>/dev/null || echo 'before 6.2')) reports no percentiles in its CSV: p50/p99 shown as n/a"
  fi
  local stats calls failed rejected
  stats=$(redis_cli INFO commandstats | tr -d '\r')
  cmdstat() {
    awk -F'[:,]' -v c="cmdstat_$1" -v f="$2" \
      '$1 == c { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' <<<"$stats"
  }
  calls=$(cmdstat evalsha calls)
  failed=$(cmdstat evalsha failed_calls)
  rejected=$(cmdstat evalsha rejected_calls)
  calls=${calls:-0}
  log "redis check: $calls EVALSHA calls (failed ${failed:-n/a}, rejected ${rejected:-n/a}, DECRBY $(cmdstat decrby calls)) for $requests requests; balances down by $((after - before))"
  ((calls >= requests)) ||
    die "Redis ran $calls EVALSHA calls, fewer than the $requests requests redis-benchmark counted"
  ((${failed:-0} == 0 && ${rejected:-0} == 0)) ||
    die "Redis answered errors: $failed EVALSHA calls failed and $rejected were rejected (NOSCRIPT?)"
  (((after - before) == calls * REDIS_AMOUNT)) ||
    die "Redis's balances fell by $((after - before)), not $REDIS_AMOUNT x $calls EVALSHA calls: not every call debited"
  kill -TERM "$REDIS_PID"
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=""
}

# ---- PostgreSQL ----------------------------------------------------------------------------
# One pgbench run: clients, seconds, output file, extra pgbench flags.
pg_run() {
  local clients=$1 seconds=$2 out=$3
  shift 3
  if ! run runuser -u postgres -- "$PG_BIN/pgbench" -n -M prepared -h "$WORK/pgsock" -p "$PG_PORT" \
    -c "$clients" -j 2 -T "$seconds" -D accounts="$ACCOUNTS" -f "$WORK/pgsock/debit.sql" "$@" \
    postgres >"$out" 2>&1; then
    sed 's/^/    /' "$out" >&2
    die "pgbench -c $clients failed"
  fi
}

# pgbench's tps, from its output: 14 and later print one "tps =" line; 13 and older print
# "including connections establishing" and then "excluding connections establishing".
pg_tps() {
  awk '/^tps = / && /excluding|without/ { print $3; found = 1; exit }
       /^tps = / && first == "" { first = $3 }
       END { if (!found) print first }' "$1"
}

pg_bench() {
  PG_DATA="$WORK/pg"
  mkdir -p "$PG_DATA" "$WORK/pgsock"
  chown postgres "$PG_DATA" "$WORK/pgsock"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -A trust >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -l "$WORK/pgsock/pg.log" start -o \
    "-p $PG_PORT -k $WORK/pgsock -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on \
     -c shared_buffers=512MB -c max_connections=300 -c wal_buffers=64MB -c max_wal_size=8GB \
     -c checkpoint_timeout=30min" >/dev/null || die "PostgreSQL did not start (see its log below)"
  local psql=(runuser -u postgres -- psql -q -X -v ON_ERROR_STOP=1 -h "$WORK/pgsock" -p "$PG_PORT" -d postgres)
  local sync fsync
  sync=$("${psql[@]}" -At -c "SHOW synchronous_commit")
  fsync=$("${psql[@]}" -At -c "SHOW fsync")
  log "postgres $("${psql[@]}" -At -c 'SHOW server_version'), port $PG_PORT: synchronous_commit $sync, fsync $fsync"
  [[ $sync == on && $fsync == on ]] ||
    die "PostgreSQL is not durable on every commit (synchronous_commit $sync, fsync $fsync)"
  "${psql[@]}" -c "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL) WITH (fillfactor = 50)" \
    -c "INSERT INTO accounts SELECT i, $BALANCE FROM generate_series(1, $ACCOUNTS) i" \
    -c "VACUUM ANALYZE accounts"
  cat >"$WORK/pgsock/debit.sql" <<'SQL'
\set id random(1, :accounts)
\set amount random(100, 9999)
UPDATE accounts SET balance = balance - :amount WHERE id = :id AND balance >= :amount;
SQL
  chown postgres "$WORK/pgsock/debit.sql"
  local best_tps=0 best_clients=0 clients tps out=$WORK/pgsock/pgbench.out
  for clients in 16 64 128; do
    pg_run "$clients" "$((DURATION / 3 > 5 ? DURATION / 3 : 5))" "$out"
    tps=$(pg_tps "$out")
    [[ $tps =~ ^[0-9.]+$ ]] || die "no tps in pgbench's output: $(tail -3 "$out")"
    log "postgres $clients clients: $tps tps"
    if awk -v a="$tps" -v b="$best_tps" 'BEGIN { exit !(a > b) }'; then
      best_tps=$tps
      best_clients=$clients
    fi
  done
  ((best_clients > 0)) || die "pgbench measured no throughput with any client count"
  # The measured run, with per-transaction latencies logged for percentiles, then check that
  # the balances fell by what pgbench's transactions debit.
  rm -f "$WORK"/pgsock/pgbench_log.*
  local debited="SELECT sum($BALANCE - balance) FROM accounts" before after
  before=$("${psql[@]}" -At -c "$debited")
  pg_run "$best_clients" "$DURATION" "$out" -l --log-prefix="$WORK/pgsock/pgbench_log"
  after=$("${psql[@]}" -At -c "$debited")
  PG_TPS=$(pg_tps "$out")
  [[ $PG_TPS =~ ^[0-9.]+$ ]] || die "no tps in pgbench's output: $(tail -3 "$out")"
  local processed failed fell=$((after - before))
  processed=$(awk -F': *' '/^number of transactions actually processed/ { print $2 + 0 }' "$out")
  failed=$(awk -F': *' '/^number of failed transactions/ { print $2 + 0 }' "$out")
  log "postgres check: $processed transactions (failed ${failed:-n/a}), balances down by $fell ($(awk -v f="$fell" -v n="$processed" 'BEGIN { printf "%.0f", n ? f / n : 0 }') each; 100-9999 expected, ~5050 on average)"
  ((processed > 0)) || die "pgbench processed no transactions"
  ((${failed:-0} == 0)) || die "$failed pgbench transactions failed"
  ((fell >= processed * 100 && fell <= processed * 9999)) ||
    die "PostgreSQL's balances fell by $fell, outside 100-9999 x $processed transactions: the UPDATEs did not all debit"
  # Log lines: client transaction latency_us script epoch_s epoch_us.
  cat "$WORK"/pgsock/pgbench_log.* | awk '{ print $3 }' | sort -n >"$WORK/pgsock/latencies"
  local count
  count=$(wc -l <"$WORK/pgsock/latencies")
  ((count > 0)) || die "pgbench logged no latencies"
  PG_P50_US=$(sed -n "$((count / 2 + 1))p" "$WORK/pgsock/latencies")
  PG_P99_US=$(sed -n "$((count * 99 / 100 + 1))p" "$WORK/pgsock/latencies")
  PG_SETTING="-c $best_clients -j 2"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null
}

# ---- authd ---------------------------------------------------------------------------------
authd_bench() {
  local json="$WORK/authd.json" extra=()
  if [[ -n $RESULTS ]]; then
    extra=(--plot "$RESULTS/peers-authd.svg" --hgrm "$RESULTS/peers-authd.hgrm" --title "authd, fsync always")
    json="$RESULTS/peers-authd.json"
  fi
  # loadgen's authd data dir (several GB) goes to TMPDIR, that is WORK (exported below), so
  # cleanup removes it even when the run is cut short.
  # (A non-zero exit is said after the report is read: it says why.)
  local loadgen_rc=0
  # shellcheck disable=SC2086 # AUTHD_FLAGS is a list of flags
  run "$ROOT/target/release/loadgen" --spawn --fsync always --payers "$ACCOUNTS" \
    --mix purchase=100 --duration "$DURATION" --warmup 2 --quiet $AUTHD_FLAGS --json "$json" \
    ${extra[@]+"${extra[@]}"} >&2 || loadgen_rc=$?
  [[ -s $json ]] || die "loadgen failed (exit $loadgen_rc) before writing its report"
  local vals requests approved
  # Any error fails the comparison, Busy refusals included (loadgen itself exits 0 on those):
  # authd's figure must be of requests served, none shed.
  vals=$(python3 - "$json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
problems = []
if d.get("errors"):
    problems.append("%s errors %s" % (d["errors"], d.get("errors_by_cause")))
books = d.get("books")
if isinstance(books, dict) and not books.get("ok"):
    problems.append("the books check failed: %s" % books)
if not d.get("requests"):
    problems.append("no requests")
if problems:
    sys.exit("peers: error: loadgen: " + "; ".join(problems))
lat = d["latency_us"]
print("%.2f %.0f %.0f %d %d %s" % (d["ops_per_s"], lat["p50"], lat["p99"], d["requests"],
      d.get("codes", {}).get("00", 0), "passed" if books else "not run"))
PY
  ) || exit 1
  ((loadgen_rc == 0)) || die "loadgen exited $loadgen_rc"
  read -r AUTHD_RPS AUTHD_P50_US AUTHD_P99_US requests approved books <<<"$vals"
  log "authd check: $requests requests, $approved approved, no errors, books check $books"
}

# ---- main ----------------------------------------------------------------------------------
preflight
install_if_missing
build_if_needed
WORK=$(mktemp -d /tmp/authd-peers.XXXXXX)
chmod 755 "$WORK" # the postgres user works in it
export TMPDIR="$WORK"
if [[ -n $RESULTS ]]; then
  mkdir -p "$RESULTS"
  RESULTS=$(cd "$RESULTS" && pwd)
fi
cd "$WORK"
log "machine: $(nproc) cores, $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg); work dir $WORK"
redis_bench
pg_bench
authd_bench

ratio() { awk -v a="$AUTHD_RPS" -v b="$1" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }'; }
labels=("system (durable on every write)"
  "authd, fsync always (loadgen)"
  "Redis Lua, appendfsync always ($REDIS_SETTING)"
  "PostgreSQL UPDATE, sync commit ($PG_SETTING)")
width=0
for label in "${labels[@]}"; do ((${#label} > width)) && width=${#label}; done
row() { printf "%-${width}s %16s %10s %10s %10s\n" "$@"; }
echo
row "${labels[0]}" "authorizations/s" "p50 us" "p99 us" "authd is"
row "${labels[1]}" "$(printf '%.0f' "$AUTHD_RPS")" "$AUTHD_P50_US" "$AUTHD_P99_US" "1.0x"
row "${labels[2]}" "$(printf '%.0f' "$REDIS_RPS")" "$REDIS_P50_US" "$REDIS_P99_US" "$(ratio "$REDIS_RPS")"
row "${labels[3]}" "$(printf '%.0f' "$PG_TPS")" "$PG_P50_US" "$PG_P99_US" "$(ratio "$PG_TPS")"
