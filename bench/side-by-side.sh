#!/usr/bin/env bash
# Side-by-side benchmark: Rampart vs nginx vs HAProxy as reverse proxies in
# front of the same upstream, on loopback, plain and (optionally) with a
# per-client rate limit on the benchmarked route.
#
#   bench/side-by-side.sh            # full run with defaults (~7 minutes)
#   PROXIES="nginx haproxy" bench/side-by-side.sh   # without Rampart
#   ROUNDS=3 DURATION=10 bench/side-by-side.sh      # quicker, noisier
#   SCENARIOS="plain limit" bench/side-by-side.sh   # each proxy with and without a limit
#
# Layout (needs at least 2 CPUs):
#   CPU $LOAD_CPU  (default 0): upstream nginx (1 worker) + h2load (1 thread)
#   CPU $PROXY_CPU (default 1): the proxy under test (1 worker), one at a time
#
# Scenarios (SCENARIOS). Each proxy runs once per scenario, as its own process
# on its own port, and every variant takes part in the same interleaved rounds:
#   plain   no limit                         variants: rampart, nginx, haproxy
#   limit   a per-client-IP rate limit on the route, so high that nothing is
#           refused: the cost of the check   variants: rampart+limit,
#                                            nginx+limit_req, haproxy+stick-table
#   refuse  the same limit with a low rate, so almost every request is refused
#           with a 429: the cost of a refusal
#                                            variants: rampart+refuse,
#                                            nginx+refuse, haproxy+refuse
# The limits: Rampart `rate_limits` keyed by [ip] (algorithm LIMIT_ALGORITHM);
# nginx `limit_req_zone $binary_remote_addr` + `limit_req burst=B nodelay`;
# HAProxy a stick table, `track-sc0 src` and `deny if sc_http_req_rate(0) gt RATE`
# (a 1 s sliding window). h2load sends every request from 127.0.0.1, so each
# limit sees one client (one hot key). No proxy logs refusals (access and
# security logs off; nginx's limit_req_log_level below its error_log level).
#
# Environment (all optional):
#   PROXIES       proxies to measure, in round-1 order   ("rampart nginx haproxy")
#   SCENARIOS     scenarios to measure for each proxy (plain limit refuse)  ("plain")
#   LIMIT_RATE    limit scenario: requests per second per client     (1000000)
#   LIMIT_BURST   limit scenario: burst (Rampart burst, nginx burst)  (1000)
#   REFUSE_RATE   refuse scenario: requests per second per client    (100)
#   REFUSE_BURST  refuse scenario: burst                              (10)
#   LIMIT_ALGORITHM  Rampart's algorithm: gcra (Rampart's default) or
#                 leaky_bucket (nginx's limit_req arithmetic, with nodelay)  (gcra)
#   LIMIT_HEADERS 1: Rampart sends RateLimit fields on admitted responses
#                 (its default); 0: `headers: false`                  (1)
#   ROUNDS        closed-loop rounds, order rotated each round        (5)
#   DURATION      seconds per closed-loop measurement                 (15)
#   WARMUP        seconds of unmeasured load before each measurement  (3)
#   CONNS         h2load connections (closed and open loop)           (50)
#   LAT_ROUNDS    open-loop rounds per proxy                          (2)
#   LAT_DURATION  seconds per open-loop measurement                   (15)
#   LAT_FRACTION  open-loop total rate as a fraction of the lowest
#                 per-proxy median closed-loop req/s                  (0.5)
#   LAT_RPS_TOTAL fix the open-loop total rate instead (req/s)
#   LAT_MODE      staggered: clients start 1 ms apart (h2load -r 1
#                 --rate-period 1ms -n N), so their request timers are
#                 out of phase; burst: plain `--rps -D`, where all
#                 clients fire in the same instant        (staggered)
#   RAMPART_BIN   Rampart binary to use; when unset, the script runs
#                 `nice -n 19 cargo build --release -p rampart` and uses target/release/rampart
#   RAMPART_COMMIT  the git commit the Rampart binary was built from, for the
#                 report (default: the repository's HEAD, "-dirty" appended when
#                 the script builds from a tree with uncommitted changes)
#   PROXY_CPU / LOAD_CPU   CPU numbers                                (1 / 0)
#   UPSTREAM_PORT RAMPART_PORT RAMPART_ADMIN_PORT NGINX_PORT HAPROXY_PORT
#                 (18000 18080 19901 18081 18082); the limit scenario uses
#                 these ports + 10, the refuse scenario + 20
#   OUT_DIR       where results go                                   (bench/out)
#   KEEP_TMP=1    keep the temporary directory (configs, h2load outputs and
#                 per-request logs) afterwards
#   WAIT_IDLE     seconds to wait for the machine to be quiet (all CPUs
#                 < IDLE_BUSY_PCT% busy over 10 s, default 10) before starting,
#                 and before repeating a disturbed measurement        (300)
#   MAX_FOREIGN   a measurement during which processes other than this
#                 benchmark's used more than this fraction of one CPU
#                 is repeated (after waiting for quiet)               (0.05)
#   MAX_STEAL     likewise for hypervisor steal time on the two CPUs,
#                 as a fraction of one CPU                            (0.05)
#   MAX_ATTEMPTS  attempts per measurement; the last is kept, flagged  (4)
#
# Output: bench/out/side-by-side-<timestamp>.json (every sample) and
#         bench/out/side-by-side-<timestamp>.md (the summary table, also on stdout).
#
# Everything listens and connects on 127.0.0.1 only. Every process started here
# is stopped on exit; every h2load run is bounded by -D and by `timeout`.
set -euo pipefail

# Bash reads a script while it runs it, so a checkout or stash that rewrites
# this file mid-run would derail the run: run from a private copy instead.
if [[ -z "${SBS_SELF_COPY:-}" ]]; then
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  self_copy="$(mktemp -d /tmp/rampart-side-by-side-self.XXXXXX)"
  cp "$here/side-by-side.sh" "$here/side_by_side_report.py" "$self_copy/"
  SBS_SELF_COPY="$self_copy" SBS_REPO_ROOT="$(cd "$here/.." && pwd)" \
    bash "$self_copy/side-by-side.sh" "$@" &
  child=$!
  # pass an interrupt on as TERM: the copy cleans up on TERM
  trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM HUP
  while :; do
    rc=0
    wait "$child" || rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  rm -rf "$self_copy"
  exit "$rc"
fi
REPO_ROOT="$SBS_REPO_ROOT"
REPORT_PY="$SBS_SELF_COPY/side_by_side_report.py"

PROXIES="${PROXIES:-rampart nginx haproxy}"
SCENARIOS="${SCENARIOS:-plain}"
LIMIT_RATE="${LIMIT_RATE:-1000000}"
LIMIT_BURST="${LIMIT_BURST:-1000}"
REFUSE_RATE="${REFUSE_RATE:-100}"
REFUSE_BURST="${REFUSE_BURST:-10}"
LIMIT_ALGORITHM="${LIMIT_ALGORITHM:-gcra}"
LIMIT_HEADERS="${LIMIT_HEADERS:-1}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
CONNS="${CONNS:-50}"
LAT_ROUNDS="${LAT_ROUNDS:-2}"
LAT_DURATION="${LAT_DURATION:-15}"
LAT_FRACTION="${LAT_FRACTION:-0.5}"
LAT_RPS_TOTAL="${LAT_RPS_TOTAL:-}"
LAT_MODE="${LAT_MODE:-staggered}"
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
UPSTREAM_PORT="${UPSTREAM_PORT:-18000}"
RAMPART_PORT="${RAMPART_PORT:-18080}"
RAMPART_ADMIN_PORT="${RAMPART_ADMIN_PORT:-19901}"
NGINX_PORT="${NGINX_PORT:-18081}"
HAPROXY_PORT="${HAPROXY_PORT:-18082}"
OUT_DIR="${OUT_DIR:-$REPO_ROOT/bench/out}"
KEEP_TMP="${KEEP_TMP:-0}"
READY_TIMEOUT="${READY_TIMEOUT:-30}"
WAIT_IDLE="${WAIT_IDLE:-300}"
IDLE_BUSY_PCT="${IDLE_BUSY_PCT:-10}"
MAX_FOREIGN="${MAX_FOREIGN:-0.05}"
MAX_ATTEMPTS="${MAX_ATTEMPTS:-4}"
MAX_STEAL="${MAX_STEAL:-0.05}"
URL_PATH="/api/item.json"

log() { printf '[side-by-side %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[side-by-side] ERROR: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (configuration is by environment variables; see --help)" ;;
esac

for v in ROUNDS DURATION WARMUP CONNS LAT_ROUNDS LAT_DURATION PROXY_CPU LOAD_CPU \
         UPSTREAM_PORT RAMPART_PORT RAMPART_ADMIN_PORT NGINX_PORT HAPROXY_PORT READY_TIMEOUT \
         WAIT_IDLE IDLE_BUSY_PCT MAX_ATTEMPTS LIMIT_RATE LIMIT_BURST REFUSE_RATE REFUSE_BURST; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
(( ROUNDS >= 1 && DURATION >= 1 && CONNS >= 1 && MAX_ATTEMPTS >= 1 )) \
  || die "ROUNDS, DURATION, CONNS and MAX_ATTEMPTS must be >= 1"
(( LIMIT_RATE >= 1 && REFUSE_RATE >= 1 )) || die "LIMIT_RATE and REFUSE_RATE must be >= 1"
for p in $PROXIES; do
  case "$p" in rampart|nginx|haproxy) ;; *) die "unknown proxy '$p' in PROXIES" ;; esac
done
[[ -n "${PROXIES// /}" ]] || die "PROXIES is empty"
for sc in $SCENARIOS; do
  case "$sc" in plain|limit|refuse) ;; *) die "unknown scenario '$sc' in SCENARIOS (plain, limit, refuse)" ;; esac
done
[[ -n "${SCENARIOS// /}" ]] || die "SCENARIOS is empty"
case "$LIMIT_ALGORITHM" in gcra|leaky_bucket) ;; *) die "LIMIT_ALGORITHM must be gcra or leaky_bucket" ;; esac
case "$LIMIT_HEADERS" in 0|1) ;; *) die "LIMIT_HEADERS must be 0 or 1" ;; esac
case "$LAT_MODE" in staggered|burst) ;; *) die "LAT_MODE must be staggered or burst" ;; esac

# ---------------------------------------------------------------- prerequisites
need_pkgs=()
command -v nginx   >/dev/null 2>&1 || need_pkgs+=(nginx)
command -v haproxy >/dev/null 2>&1 || need_pkgs+=(haproxy)
command -v h2load  >/dev/null 2>&1 || need_pkgs+=(nghttp2-client)
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v curl    >/dev/null 2>&1 || need_pkgs+=(curl)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v timeout >/dev/null 2>&1 || need_pkgs+=(coreutils)
if ((${#need_pkgs[@]})); then
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing missing packages: ${need_pkgs[*]}"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
      || die "apt-get install ${need_pkgs[*]} failed"
  else
    die "missing packages: ${need_pkgs[*]} (run as root with apt-get available, or install them: apt-get install ${need_pkgs[*]})"
  fi
fi
# Debian's packages may have started system services; ours use their own
# configs and ports, so those do not matter, but the binaries must be there.
NGINX_BIN="$(command -v nginx)"
HAPROXY_BIN="$(command -v haproxy)"

NCPU="$(nproc --all)"
(( PROXY_CPU < NCPU && LOAD_CPU < NCPU )) || die "need CPUs $LOAD_CPU and $PROXY_CPU; this machine has $NCPU"
(( PROXY_CPU != LOAD_CPU )) || die "PROXY_CPU and LOAD_CPU must differ"
CLK_TCK="$(getconf CLK_TCK)"

if [[ " $PROXIES " == *" rampart "* ]]; then
  if [[ -z "${RAMPART_BIN:-}" ]]; then
    log "building Rampart: nice -n 19 cargo build --release -p rampart"
    (cd "$REPO_ROOT" && nice -n 19 cargo build --release -p rampart) \
      || die "cargo build --release -p rampart failed"
    RAMPART_BIN="$REPO_ROOT/target/release/rampart"
    if [[ -z "${RAMPART_COMMIT:-}" ]] \
       && [[ -n "$(cd "$REPO_ROOT" && git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
      RAMPART_COMMIT="$(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)-dirty"
      log "WARNING: the working tree has uncommitted changes; the binary is labelled $RAMPART_COMMIT"
    fi
  fi
  [[ -x "$RAMPART_BIN" ]] || die "Rampart binary '$RAMPART_BIN' is missing or not executable"
fi

port_in_use() {
  # true if something accepts connections on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---------------------------------------------------------------- variants
# A variant is one proxy in one scenario: its own process, port and config.
declare -A V_PROXY=() V_SCENARIO=() V_PORT=() V_ADMIN_PORT=()
VARIANT_LIST=()
scenario_index() {
  case "$1" in plain) echo 0 ;; limit) echo 1 ;; refuse) echo 2 ;; esac
}
variant_name() {
  # variant_name PROXY SCENARIO
  case "$2" in
    plain) echo "$1" ;;
    limit) case "$1" in rampart) echo rampart+limit ;; nginx) echo nginx+limit_req ;;
                        haproxy) echo haproxy+stick-table ;; esac ;;
    refuse) echo "$1+refuse" ;;
  esac
}
for p in $PROXIES; do
  for sc in $SCENARIOS; do
    v="$(variant_name "$p" "$sc")"
    [[ -z "${V_PROXY[$v]:-}" ]] || die "'$p' or '$sc' is listed twice"
    VARIANT_LIST+=("$v")
    V_PROXY[$v]="$p"
    V_SCENARIO[$v]="$sc"
    case "$p" in
      rampart) base="$RAMPART_PORT" ;;
      nginx) base="$NGINX_PORT" ;;
      haproxy) base="$HAPROXY_PORT" ;;
    esac
    V_PORT[$v]=$(( base + 10 * $(scenario_index "$sc") ))
    V_ADMIN_PORT[$v]=$(( RAMPART_ADMIN_PORT + 10 * $(scenario_index "$sc") ))
  done
done

check_ports=("$UPSTREAM_PORT")
for v in "${VARIANT_LIST[@]}"; do
  check_ports+=("${V_PORT[$v]}")
  [[ "${V_PROXY[$v]}" == rampart ]] && check_ports+=("${V_ADMIN_PORT[$v]}")
done
declare -A port_seen=()
for port in "${check_ports[@]}"; do
  (( port >= 1 && port <= 65535 )) || die "port $port is out of range"
  [[ -z "${port_seen[$port]:-}" ]] || die "port $port is used twice (check the *_PORT variables)"
  port_seen[$port]=1
  port_in_use "$port" && die "port 127.0.0.1:$port is already in use (override with *_PORT variables)"
done

# ---------------------------------------------------------------- bookkeeping
TS="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT_DIR"
OUT_JSON="$OUT_DIR/side-by-side-$TS.json"
OUT_MD="$OUT_DIR/side-by-side-$TS.md"
WORK="$(mktemp -d /tmp/rampart-side-by-side.XXXXXX)"
chmod 755 "$WORK"   # nginx workers may run as an unprivileged user
SAMPLES="$WORK/samples.jsonl"
: >"$SAMPLES"

declare -A PID_OF=()
STARTED_PIDS=()

descendants() {
  # print $1 and all its descendants
  local pid="$1" child
  echo "$pid"
  for child in $(pgrep -P "$pid" 2>/dev/null || true); do
    descendants "$child"
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pids=() p
  for p in "${STARTED_PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || continue
    pids+=($(descendants "$p"))
  done
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 50); do
      local alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$SBS_SELF_COPY"
  if [[ "$KEEP_TMP" == 1 || $rc -ne 0 ]]; then
    log "temporary files kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cpu_ticks_of_tree() {
  # utime+stime (clock ticks) of $1 and all its descendants; every thread of a
  # process is included in /proc/PID/stat
  local total=0 pid stat rest
  for pid in $(descendants "$1"); do
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
    rest="${stat##*) }"   # fields from 3 (state) on
    # shellcheck disable=SC2086
    set -- $rest
    total=$(( total + ${12} + ${13} ))   # fields 14 and 15: utime, stime
  done
  echo "$total"
}

cpu_steal_ticks() {
  # steal ticks of CPU $1 (time the hypervisor gave to someone else)
  awk -v c="cpu$1" '$1 == c { print $9 + 0; exit }' /proc/stat
}

cpu_busy_ticks() {
  # busy ticks (everything but idle and iowait) of CPU $1 from /proc/stat
  awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

wait_http_200() {
  # wait_http_200 URL PID NAME
  local url="$1" pid="$2" name="$3" deadline=$((SECONDS + READY_TIMEOUT)) code
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup (see $WORK/$name.out or $WORK/$name/)"
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)"
    [[ "$code" == 200 ]] && return 0
    sleep 0.2
  done
  die "$name not ready at $url after ${READY_TIMEOUT}s (see $WORK/$name.out or $WORK/$name/)"
}

# ---------------------------------------------------------------- upstream
mkdir -p "$WORK/upstream/html/api" "$WORK/upstream/logs"
# a ~100-byte JSON document
printf '{"id":42,"name":"widget","price":19.99,"tags":["a","b","c"],"in_stock":true,"updated":"2024-01-01"}\n' \
  >"$WORK/upstream/html/api/item.json"
BODY_BYTES="$(wc -c <"$WORK/upstream/html/api/item.json")"

nginx_temp_paths() {
  local d="$1"
  cat <<EOF
    client_body_temp_path $d/tmp/client_body;
    proxy_temp_path       $d/tmp/proxy;
    fastcgi_temp_path     $d/tmp/fastcgi;
    uwsgi_temp_path       $d/tmp/uwsgi;
    scgi_temp_path        $d/tmp/scgi;
EOF
}

mkdir -p "$WORK/upstream/tmp"
cat >"$WORK/upstream/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $WORK/upstream/nginx.pid;
error_log $WORK/upstream/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$(nginx_temp_paths "$WORK/upstream")
    default_type application/json;
    types { application/json json; }
    keepalive_timeout 120s;
    keepalive_requests 100000000;
    open_file_cache max=16 inactive=60s;
    open_file_cache_valid 60s;
    server {
        listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
        root $WORK/upstream/html;
        location / { }
    }
}
EOF

start_upstream() {
  taskset -c "$LOAD_CPU" "$NGINX_BIN" -p "$WORK/upstream" -e "$WORK/upstream/logs/error.log" \
    -c "$WORK/upstream/nginx.conf" >"$WORK/upstream.out" 2>&1 &
  local pid=$!
  STARTED_PIDS+=("$pid")
  PID_OF[upstream]=$pid
  wait_http_200 "http://127.0.0.1:$UPSTREAM_PORT$URL_PATH" "$pid" upstream
}

# ---------------------------------------------------------------- proxies
limit_rate() {
  # limit_rate SCENARIO: "RATE BURST" (requests per second per client, burst)
  case "$1" in
    limit) echo "$LIMIT_RATE $LIMIT_BURST" ;;
    refuse) echo "$REFUSE_RATE $REFUSE_BURST" ;;
  esac
}

write_nginx_proxy_conf() {
  # write_nginx_proxy_conf VARIANT
  local v="$1" d="$WORK/$1" zone="" limit="" rate burst
  if [[ "${V_SCENARIO[$v]}" != plain ]]; then
    read -r rate burst <<<"$(limit_rate "${V_SCENARIO[$v]}")"
    zone="    limit_req_zone \$binary_remote_addr zone=bench:10m rate=${rate}r/s;"
    # refusals are logged at info, below error_log's level: not written, as
    # the other proxies do not log them either
    limit="            limit_req zone=bench burst=$burst nodelay;
            limit_req_status 429;
            limit_req_log_level info;"
  fi
  mkdir -p "$d/tmp" "$d/logs"
  cat >"$d/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$(nginx_temp_paths "$d")
    keepalive_timeout 120s;
    keepalive_requests 100000000;
$zone
    upstream backend {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 120s;
    }
    server {
        listen 127.0.0.1:${V_PORT[$v]} backlog=4096;
        location / {
$limit
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

write_haproxy_conf() {
  # write_haproxy_conf VARIANT
  local v="$1" d="$WORK/$1" limit="" rate burst
  if [[ "${V_SCENARIO[$v]}" != plain ]]; then
    # http_req_rate(1s) counts requests in a sliding 1 s window (refused ones
    # too); HAProxy has no burst setting, the window is its burst
    read -r rate burst <<<"$(limit_rate "${V_SCENARIO[$v]}")"
    limit="    stick-table type ip size 1m expire 10s store http_req_rate(1s)
    http-request track-sc0 src
    http-request deny deny_status 429 if { sc_http_req_rate(0) gt $rate }"
  fi
  mkdir -p "$d"
  cat >"$d/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4000

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 120s
    option http-keep-alive

frontend public
    bind 127.0.0.1:${V_PORT[$v]}
$limit
    default_backend backend

backend backend
    http-reuse always
    server up1 127.0.0.1:$UPSTREAM_PORT maxconn 1000
EOF
}

write_rampart_conf() {
  # write_rampart_conf VARIANT
  local v="$1" d="$WORK/$1" policy="" use="" rate burst
  if [[ "${V_SCENARIO[$v]}" != plain ]]; then
    read -r rate burst <<<"$(limit_rate "${V_SCENARIO[$v]}")"
    policy="rate_limits:
  bench:
    algorithm: $LIMIT_ALGORITHM
    rate: ${rate}r/s
    burst: $burst
    key: [ip]"
    if [[ "$LIMIT_ALGORITHM" == leaky_bucket ]]; then
      policy+=$'\n    nodelay: true'
    fi
    if [[ "$LIMIT_HEADERS" == 0 ]]; then
      policy+=$'\n    headers: false'
    fi
    use="    rate_limit: [bench]"
  fi
  mkdir -p "$d"
  cat >"$d/rampart.yaml" <<EOF
listeners:
  - name: public
    bind: "127.0.0.1:${V_PORT[$v]}"
admin:
  bind: "127.0.0.1:${V_ADMIN_PORT[$v]}"
access_log:
  output: "off"
upstreams:
  backend:
    targets: ["127.0.0.1:$UPSTREAM_PORT"]
$policy
routes:
  - name: all
    match:
      prefix: /
    upstream: backend
$use
EOF
  "$RAMPART_BIN" validate --config "$d/rampart.yaml" >"$d/validate.out" 2>&1 \
    || die "rampart validate failed for $v: $(cat "$d/validate.out")"
}

declare -A V_CLOSES_ON_REFUSAL=()
check_limit() {
  # check_limit VARIANT: the limit must admit (limit scenario) or refuse
  # (refuse scenario) as intended; 2000 quick requests on 10 connections
  local v="$1" url="http://127.0.0.1:${V_PORT[$1]}$URL_PATH" out="$WORK/$1/check.txt"
  local ok2 bad4 conns
  try_h2load "$out" --h1 -c 10 -t 1 -n 2000 "$url" || die "h2load check of $v failed: $(tail -5 "$out")"
  read -r ok2 bad4 <<<"$(awk '/^status codes:/ { print $3, $7; exit }' "$out")"
  [[ -n "$ok2" && -n "$bad4" ]] || die "cannot read h2load's status codes in $out"
  case "${V_SCENARIO[$v]}" in
    limit)
      (( ok2 == 2000 )) || die "$v refused or failed requests below its limit (2xx: $ok2 of 2000, 4xx: $bad4)" ;;
    refuse)
      (( bad4 >= 1000 )) || die "$v did not refuse most of 2000 quick requests (4xx: $bad4, 2xx: $ok2)"
      # 20 requests in a row on one curl (one connection if the proxy keeps
      # it): "status:new-connections" each. A refusal must be a 429, and the
      # request after it should reuse the connection; if not, each refused
      # request also pays for a new connection
      local args=() i
      for ((i = 0; i < 20; i++)); do args+=(-o /dev/null "$url"); done
      conns="$(curl -s --max-time 5 -w '%{http_code}:%{num_connects} ' "${args[@]}" || true)"
      [[ "$conns" == *"429:"* ]] || die "$v refused no request of 20 after a burst with a 429: $conns"
      if awk -v s="$conns" 'BEGIN { n = split(s, a, " "); for (i = 2; i <= n; i++) {
             split(a[i - 1], p, ":"); split(a[i], q, ":");
             if (p[1] == "429" && q[2] != "0") exit 0 } exit 1 }'; then
        log "WARNING: $v closes the connection after a refusal ($conns)"
        V_CLOSES_ON_REFUSAL[$v]=1
      fi ;;
  esac
  log "$v: $ok2 2xx and $bad4 4xx answers to 2000 quick requests"
}

start_proxy() {
  # start_proxy VARIANT
  local v="$1" name="${V_PROXY[$1]}" d="$WORK/$1" pid port="${V_PORT[$1]}"
  case "$name" in
    nginx)
      write_nginx_proxy_conf "$v"
      "$NGINX_BIN" -t -q -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" >"$d/nginx.check" 2>&1 \
        || die "nginx config check failed for $v: $(cat "$d/nginx.check")"
      taskset -c "$PROXY_CPU" "$NGINX_BIN" -p "$d" -e "$d/logs/error.log" \
        -c "$d/nginx.conf" >"$d/nginx.out" 2>&1 &
      pid=$!
      ;;
    haproxy)
      write_haproxy_conf "$v"
      "$HAPROXY_BIN" -c -q -f "$d/haproxy.cfg" >"$d/haproxy.check" 2>&1 \
        || die "haproxy config check failed for $v: $(cat "$d/haproxy.check")"
      taskset -c "$PROXY_CPU" "$HAPROXY_BIN" -db -f "$d/haproxy.cfg" \
        >"$d/haproxy.out" 2>&1 &
      pid=$!
      ;;
    rampart)
      write_rampart_conf "$v"
      taskset -c "$PROXY_CPU" "$RAMPART_BIN" run --config "$d/rampart.yaml" --workers 1 \
        >"$d/rampart.out" 2>&1 &
      pid=$!
      ;;
  esac
  STARTED_PIDS+=("$pid")
  PID_OF[$v]=$pid
  if [[ "$name" == rampart ]]; then
    wait_http_200 "http://127.0.0.1:${V_ADMIN_PORT[$v]}/readyz" "$pid" "$v"
  fi
  wait_http_200 "http://127.0.0.1:$port$URL_PATH" "$pid" "$v"
  # the proxied body must be the upstream's file, byte for byte
  curl -s --max-time 5 "http://127.0.0.1:$port$URL_PATH" >"$d/body"
  cmp -s "$d/body" "$WORK/upstream/html/api/item.json" \
    || die "$v returned a different body than the upstream file"
  if [[ "$name" == rampart && "${V_SCENARIO[$v]}" != plain && "$LIMIT_HEADERS" == 1 ]]; then
    curl -s -D - -o /dev/null --max-time 5 "http://127.0.0.1:$port$URL_PATH" >"$d/headers"
    grep -qi '^ratelimit-policy:' "$d/headers" \
      || die "$v: no RateLimit-Policy field on an admitted response (is the limit applied?)"
  fi
  # every process of the proxy must be on PROXY_CPU only
  local p aff
  for p in $(descendants "$pid"); do
    aff="$(taskset -cp "$p" 2>/dev/null | awk -F': ' '{print $2}')"
    [[ "$aff" == "$PROXY_CPU" ]] || die "$v process $p has CPU affinity '$aff', expected $PROXY_CPU"
  done
  [[ "${V_SCENARIO[$v]}" == plain ]] || check_limit "$v"
  log "$v ready (pid $pid, port $port, $(descendants "$pid" | wc -l) process(es))"
}

# ---------------------------------------------------------------- measuring
try_h2load() {
  # try_h2load OUTFILE h2load-args... ; bounded by `timeout`; returns h2load's status
  local out="$1"; shift
  local limit=$(( DURATION + LAT_DURATION + WARMUP + 60 ))
  timeout --kill-after=5 "$limit" taskset -c "$LOAD_CPU" h2load "$@" >"$out" 2>&1
}

run_h2load() {
  # run_h2load OUTFILE h2load-args... ; dies if h2load fails
  local out="$1"
  if ! try_h2load "$@"; then
    log "h2load failed:"; tail -20 "$out" >&2
    die "h2load ${*:2} failed"
  fi
}

snapshot() {
  # snapshot PID: "proxy-tree-ticks proxy-cpu-busy load-cpu-busy foreign-ticks"
  echo "$(cpu_ticks_of_tree "$1") $(cpu_busy_ticks "$PROXY_CPU") $(cpu_busy_ticks "$LOAD_CPU")" \
       "$(python3 "$REPORT_PY" foreign-cpu --root "$$")" \
       "$(( $(cpu_steal_ticks "$PROXY_CPU") + $(cpu_steal_ticks "$LOAD_CPU") ))"
}

measure_once() {
  # measure_once KIND VARIANT ROUND ORDER ATTEMPT [RPS_PER_CLIENT TARGET_TOTAL]
  # returns 3 if other processes used more than MAX_FOREIGN of a CPU meanwhile
  local kind="$1" name="$2" round="$3" order="$4" attempt="$5" rps_client="${6:-}" target="${7:-}"
  local url pid base mode="" s0 s1
  url="http://127.0.0.1:${V_PORT[$name]}$URL_PATH"
  pid="${PID_OF[$name]}"
  kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) is no longer running"
  base="$WORK/$kind-$name-r$round-a$attempt"
  if (( WARMUP > 0 )); then
    run_h2load "$base.warmup.txt" --h1 -c "$CONNS" -t 1 -D "$WARMUP" "$url"
  fi
  s0="$(snapshot "$pid")"
  if [[ "$kind" == closed ]]; then
    run_h2load "$base.txt" --h1 -c "$CONNS" -t 1 -D "$DURATION" "$url"
  else
    rm -f "$base.log"   # h2load appends to an existing log file
    mode="$LAT_MODE"
    if [[ "$mode" == staggered ]]; then
      # one client every 1 ms: each client's --rps timer gets its own phase.
      # -r excludes -D, so the length is given as a request count.
      if ! try_h2load "$base.txt" --h1 -c "$CONNS" -t 1 -r 1 --rate-period 1ms \
             --rps "$rps_client" -n $(( rps_client * CONNS * LAT_DURATION )) \
             --log-file "$base.log" "$url"; then
        # h2load's -r mode does not reconnect when the server closes a
        # connection, and then waits until `timeout` ends it
        log "WARNING: staggered open-loop run against $name failed; repeating it in burst mode"
        tail -5 "$base.txt" >&2
        mode=burst
        rm -f "$base.log"
        s0="$(snapshot "$pid")"
      fi
    fi
    if [[ "$mode" == burst ]]; then
      run_h2load "$base.txt" --h1 -c "$CONNS" -t 1 --rps "$rps_client" -D "$LAT_DURATION" \
        --log-file "$base.log" "$url"
    fi
  fi
  s1="$(snapshot "$pid")"
  local a b extra=() rc=0
  read -r -a a <<<"$s0"; read -r -a b <<<"$s1"
  [[ "$kind" == open ]] && extra=(--log-file "$base.log" --target-rps "$target" --lat-mode "$mode")
  python3 "$REPORT_PY" record --jsonl "$SAMPLES" --kind "$kind" --proxy "$name" \
    --scenario "${V_SCENARIO[$name]}" --round "$round" --order "$order" --attempt "$attempt" --h2load-out "$base.txt" \
    --clk-tck "$CLK_TCK" --cpu-before "${a[0]}" --cpu-after "${b[0]}" \
    --cpu1-busy-before "${a[1]}" --cpu1-busy-after "${b[1]}" \
    --cpu0-busy-before "${a[2]}" --cpu0-busy-after "${b[2]}" \
    --foreign-before "${a[3]}" --foreign-after "${b[3]}" --max-foreign "$MAX_FOREIGN" \
    --steal-before "${a[4]}" --steal-after "${b[4]}" --max-steal "$MAX_STEAL" \
    "${extra[@]}" || rc=$?
  # per-request logs are large; the summary is in the JSON
  [[ "$KEEP_TMP" == 1 ]] || rm -f "$base.log"
  return "$rc"
}

measure() {
  # measure KIND VARIANT ROUND ORDER [RPS_PER_CLIENT TARGET_TOTAL]
  # repeats a measurement that other processes disturbed, up to MAX_ATTEMPTS
  local attempt rc
  for ((attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)); do
    rc=0
    measure_once "$1" "$2" "$3" "$4" "$attempt" "${@:5}" || rc=$?
    case "$rc" in
      0) return 0 ;;
      3) if ((attempt < MAX_ATTEMPTS)); then
           log "that run was disturbed; waiting for quiet and repeating it"
           wait_idle
         else
           log "WARNING: still disturbed after $MAX_ATTEMPTS attempts; keeping it, flagged"
         fi ;;
      *) die "recording the $1-loop result for $2 failed" ;;
    esac
  done
}

rotated() {
  # rotated N word... : the words rotated left by N
  local n="$1"; shift
  local arr=("$@") len=$# i
  for ((i = 0; i < len; i++)); do
    printf '%s ' "${arr[$(( (i + n) % len ))]}"
  done
}

# ---------------------------------------------------------------- machine label
busy_pct_over() {
  # busy_pct_over SECONDS: whole-machine busy % over that many seconds
  local a b
  a="$(awk '$1 == "cpu" { print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)"
  sleep "$1"
  b="$(awk '$1 == "cpu" { print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)"
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
    busy = y[1] - x[1]; idle = y[2] - x[2];
    if (busy + idle > 0) printf "%.1f", 100 * busy / (busy + idle); else print 0 }'
}

CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
KERNEL="$(uname -r)"
NGINX_VERSION="$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')"
HAPROXY_VERSION="$("$HAPROXY_BIN" -v 2>&1 | awk 'NR == 1 { print "HAProxy " $3 }')"
H2LOAD_VERSION="$(h2load --version 2>&1 | awk 'NR == 1')"
RAMPART_VERSION=""
RAMPART_COMMIT="${RAMPART_COMMIT:-$(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo uncommitted)}"
if [[ " $PROXIES " == *" rampart "* ]]; then
  RAMPART_VERSION="$("$RAMPART_BIN" --version 2>/dev/null | awk 'NR == 1' || true)"
  RAMPART_VERSION="${RAMPART_VERSION:-rampart} (git $RAMPART_COMMIT)"
fi
wait_idle() {
  # wait (at most WAIT_IDLE seconds) until the machine is below IDLE_BUSY_PCT busy;
  # sets LAST_BUSY
  # over a 10 s window, so that a short pause between two compiler runs
  # does not count as quiet
  local deadline=$((SECONDS + WAIT_IDLE)) last_log=-100
  LAST_BUSY="$(busy_pct_over 10)"
  while awk -v b="$LAST_BUSY" -v t="$IDLE_BUSY_PCT" 'BEGIN { exit !(b > t) }' \
        && ((SECONDS < deadline)); do
    if ((SECONDS - last_log >= 30)); then
      log "machine ${LAST_BUSY}% busy (> ${IDLE_BUSY_PCT}%); waiting up to $((deadline - SECONDS))s more for it to go quiet"
      last_log=$SECONDS
    fi
    LAST_BUSY="$(busy_pct_over 10)"
  done
}
# A build or test running beside the benchmark ruins it: wait (bounded) for a
# quiet machine before starting.
wait_idle
PREFLIGHT_BUSY="$LAST_BUSY"
log "machine: $NCPU CPUs, $CPU_MODEL, kernel $KERNEL; busy ${PREFLIGHT_BUSY}% before start"
log "$NGINX_VERSION | $HAPROXY_VERSION | $H2LOAD_VERSION${RAMPART_VERSION:+ | $RAMPART_VERSION}"
if awk -v b="$PREFLIGHT_BUSY" 'BEGIN { exit !(b > 10) }'; then
  log "WARNING: the machine is ${PREFLIGHT_BUSY}% busy before the benchmark; figures may be disturbed"
fi

PROXY_LIST=("${VARIANT_LIST[@]}")
est=$(( ROUNDS * ${#PROXY_LIST[@]} * (DURATION + WARMUP + 1) + LAT_ROUNDS * ${#PROXY_LIST[@]} * (LAT_DURATION + WARMUP + 1) ))
log "variants: ${PROXY_LIST[*]}; $ROUNDS closed-loop rounds of ${DURATION}s, $LAT_ROUNDS open-loop rounds of ${LAT_DURATION}s; about $((est / 60)) min $((est % 60)) s"

# ---------------------------------------------------------------- run
start_upstream
log "upstream nginx ready (pid ${PID_OF[upstream]}) on CPU $LOAD_CPU, body $BODY_BYTES bytes"
for p in "${PROXY_LIST[@]}"; do start_proxy "$p"; done

log "closed loop: h2load --h1 -c $CONNS -t 1 -D $DURATION"
for ((r = 1; r <= ROUNDS; r++)); do
  read -r -a order <<<"$(rotated $((r - 1)) "${PROXY_LIST[@]}")"
  log "round $r/$ROUNDS: ${order[*]}"
  i=0
  for p in "${order[@]}"; do
    measure closed "$p" "$r" "$i"
    i=$((i + 1))
  done
done

if (( LAT_ROUNDS > 0 && LAT_DURATION > 0 )); then
  if [[ -n "$LAT_RPS_TOTAL" ]]; then
    target_total="$LAT_RPS_TOTAL"
  else
    weakest="$(python3 "$REPORT_PY" median-rps --jsonl "$SAMPLES")"
    target_total="$(awk -v w="$weakest" -v f="$LAT_FRACTION" 'BEGIN { printf "%d", w * f }')"
  fi
  rps_client=$(( target_total / CONNS ))
  (( rps_client >= 1 )) || rps_client=1
  target_total=$(( rps_client * CONNS ))
  if [[ "$LAT_MODE" == staggered ]]; then
    log "open loop: h2load --h1 -c $CONNS -t 1 -r 1 --rate-period 1ms --rps $rps_client -n $(( rps_client * CONNS * LAT_DURATION )) (= $target_total req/s total)"
  else
    log "open loop: h2load --h1 -c $CONNS -t 1 --rps $rps_client -D $LAT_DURATION (= $target_total req/s total)"
  fi
  for ((r = 1; r <= LAT_ROUNDS; r++)); do
    read -r -a order <<<"$(rotated $((r - 1)) "${PROXY_LIST[@]}")"
    log "latency round $r/$LAT_ROUNDS: ${order[*]}"
    i=0
    for p in "${order[@]}"; do
      measure open "$p" "$r" "$i" "$rps_client" "$target_total"
      i=$((i + 1))
    done
  done
else
  target_total=0; rps_client=0
fi

# ---------------------------------------------------------------- report
export TS NCPU CPU_MODEL KERNEL NGINX_VERSION HAPROXY_VERSION H2LOAD_VERSION RAMPART_VERSION \
  PREFLIGHT_BUSY ROUNDS DURATION WARMUP CONNS LAT_ROUNDS LAT_DURATION LAT_FRACTION LAT_MODE \
  PROXY_CPU LOAD_CPU BODY_BYTES MAX_FOREIGN MAX_STEAL MAX_ATTEMPTS URL_PATH WORK \
  SCENARIOS LIMIT_RATE LIMIT_BURST REFUSE_RATE REFUSE_BURST LIMIT_ALGORITHM LIMIT_HEADERS
variants_tsv="$WORK/variants.tsv"
: >"$variants_tsv"
for v in "${PROXY_LIST[@]}"; do
  printf '%s\t%s\t%s\t%s\n' "$v" "${V_PROXY[$v]}" "${V_SCENARIO[$v]}" \
    "${V_CLOSES_ON_REFUSAL[$v]:-0}" >>"$variants_tsv"
done
export PROXY_NAMES="${PROXY_LIST[*]}" LAT_REQUESTS=$(( rps_client * CONNS * LAT_DURATION )) \
  LAT_RPS_CLIENT="$rps_client" LAT_TARGET_TOTAL="$target_total"
python3 - "$WORK/meta.json" <<'EOF'
import json, os, sys
e = os.environ
proxies = e["PROXY_NAMES"].split()
variants = {}
for line in open(os.path.join(e["WORK"], "variants.tsv")):
    v, proxy, scenario, closes = line.rstrip("\n").split("\t")
    variants[v] = {"proxy": proxy, "scenario": scenario,
                   "closes_on_refusal": closes == "1"}
conf_file = {"rampart": "rampart.yaml", "nginx": "nginx.conf", "haproxy": "haproxy.cfg"}
meta = {
    "timestamp": e["TS"],
    "proxies": proxies,
    "variants": variants,
    "machine": {"nproc": int(e["NCPU"]), "cpu_model": e["CPU_MODEL"], "kernel": e["KERNEL"]},
    "versions": {"nginx": e["NGINX_VERSION"], "haproxy": e["HAPROXY_VERSION"],
                 "h2load": e["H2LOAD_VERSION"], "rampart": e["RAMPART_VERSION"]},
    "preflight_busy_pct": float(e["PREFLIGHT_BUSY"]),
    "config": {
        "rounds": int(e["ROUNDS"]), "duration": int(e["DURATION"]),
        "warmup": int(e["WARMUP"]), "conns": int(e["CONNS"]),
        "lat_rounds": int(e["LAT_ROUNDS"]), "lat_duration": int(e["LAT_DURATION"]),
        "lat_fraction": float(e["LAT_FRACTION"]), "lat_conns": int(e["CONNS"]),
        "lat_mode": e["LAT_MODE"], "lat_requests": int(e["LAT_REQUESTS"]),
        "lat_rps_per_client": int(e["LAT_RPS_CLIENT"]),
        "lat_target_total_rps": int(e["LAT_TARGET_TOTAL"]),
        "proxy_cpu": int(e["PROXY_CPU"]), "load_cpu": int(e["LOAD_CPU"]),
        "body_bytes": int(e["BODY_BYTES"]),
        "max_foreign": float(e["MAX_FOREIGN"]), "max_steal": float(e["MAX_STEAL"]),
        "max_attempts": int(e["MAX_ATTEMPTS"]),
        "url_path": e["URL_PATH"],
        "scenarios": e["SCENARIOS"].split(),
        "limit_rate": int(e["LIMIT_RATE"]), "limit_burst": int(e["LIMIT_BURST"]),
        "refuse_rate": int(e["REFUSE_RATE"]), "refuse_burst": int(e["REFUSE_BURST"]),
        "limit_algorithm": e["LIMIT_ALGORITHM"],
        "limit_headers": e["LIMIT_HEADERS"] == "1",
    },
    "configs": dict(
        {v: open(os.path.join(e["WORK"], v, conf_file[d["proxy"]])).read()
         for v, d in variants.items()},
        upstream=open(os.path.join(e["WORK"], "upstream/nginx.conf")).read(),
    ),
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF
echo
python3 "$REPORT_PY" report --jsonl "$SAMPLES" --meta "$WORK/meta.json" \
  --out-json "$OUT_JSON" --out-md "$OUT_MD"
echo
log "raw samples: $OUT_JSON"
log "table:       $OUT_MD"
