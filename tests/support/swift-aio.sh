#!/usr/bin/env bash
# swift-aio.sh — a REAL OpenStack Swift all-in-one (proxy + account + container + object
# servers, memcached) and optionally a real Keystone v3, on 127.0.0.1, for test harnesses.
#
# The project's own copy of the tested recipe in ../shared/testbed (so that `make test`
# works on machines without it). The integration tests (tests/integration/harness/swift.rs,
# SwiftStack) run `start DIR` with WITH_KEYSTONE=0 in a scratch dir and `stop DIR` on drop.
# No systemd, no mounts, no privileged ports, no files outside DIR (not even
# /etc/swift/swift.conf: the servers are launched through a 5-line wrapper that points
# Swift at DIR/etc/swift.conf).
#
# Debian bookworm packages (apt-get install -y ...):
#   swift swift-proxy swift-account swift-container swift-object memcached curl
#   and for Keystone: keystone python3-keystonemiddleware
#
# Usage:
#   swift-aio.sh start DIR   start everything under DIR (created if missing); prints
#                            KEY=VALUE lines (ST_AUTH, ST_USER, ST_KEY, ports, OS_* ...) on
#                            stdout and writes the same as `export` lines to DIR/env
#   swift-aio.sh stop DIR    stop exactly the processes recorded in DIR/run/*.pid
#   swift-aio.sh status DIR  exit 0 if every recorded process is alive
#
# Environment knobs (all optional):
#   WITH_KEYSTONE=1|0        also run Keystone v3 + authtoken/keystoneauth (default 1 when
#                            keystone-manage is installed, else 0)
#   SWIFT_TLS=1              the proxies serve HTTPS with a throw-away CA (DIR/tls/ca.pem,
#                            printed as SWIFT_CACERT; cert for 127.0.0.1 and localhost;
#                            Keystone itself stays on http); needs openssl
#   SWIFT_TOKEN_LIFE=N       TempAuth token lifetime in seconds (default 86400)
#   KEYSTONE_TOKEN_LIFE=N    Keystone token lifetime in seconds (default 3600)
#   SWIFT_LISTING_LIMIT=N    max names per listing page (default 10000, Swift's default)
#   SWIFT_PROXY_CLOCK_FILE=F the proxies' clock runs the seconds F holds (read at every look) from
#                            the host's: objects stamped and answers dated as if then (tests of ages)
#   SWIFT_AIO_PROXY_PORT=N, SWIFT_AIO_KEYSTONE_PROXY_PORT=N, SWIFT_AIO_KEYSTONE_PORT=N
#                            fixed ports (default: free ports chosen at start; deliberately
#                            not the names printed, so sourcing one DIR/env does not pin the
#                            ports of the next stack)
#   SWIFT_AIO_CATALOG_URL=URL  object-store URL base put in Keystone's catalog (default the
#                            Keystone proxy, http://127.0.0.1:PORT; point it at a fault-
#                            injecting TCP proxy if Keystone clients must go through one)
#   START_TIMEOUT=N          seconds to wait for readiness (default 60)
#
# With Keystone there are two proxies over the same storage: SWIFT_PROXY_PORT (TempAuth,
# ST_AUTH) and SWIFT_KEYSTONE_PROXY_PORT (authtoken+keystoneauth, in Keystone's catalog).
# TempAuth users: test:tester/testing (.admin of AUTH_test), test:tester2/testing2 (no
# rights until granted by ACL), test2:tester2/testing2, admin:admin/admin (.reseller_admin).
# Keystone: demo/demopw in project demo (role member), admin/adminpw in project admin,
# an application credential of demo (printed), region RegionOne, domain Default.
set -euo pipefail

PY=/usr/bin/python3          # Debian's python (a pyenv/venv python3 on PATH lacks swift)
cmd=${1:-}; [ $# -ge 2 ] || { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ "$cmd" = start ] && mkdir -p "$2"
if [ ! -d "$2" ]; then [ "$cmd" = stop ] && exit 0; echo "no such directory: $2" >&2; exit 1; fi
DIR=$(cd "$2" && pwd -P)   # absolute: the swift servers chdir to /
# DIR/.swift-aio marks a directory this script owns: start wipes DIR/{etc,srv,run,log,...}
# and stop reads DIR/run/*.pid, so neither may ever act on a directory that is not ours.
MARK=$DIR/.swift-aio
if [ "$cmd" = start ] && [ ! -e "$MARK" ] && [ -n "$(ls -A "$DIR")" ]; then
  echo "refusing: $DIR is not empty and was not made by swift-aio.sh" >&2; exit 1
fi
if [ "$cmd" != start ] && [ ! -e "$MARK" ]; then
  [ "$cmd" = stop ] && exit 0; echo "not a swift-aio directory: $DIR" >&2; exit 1
fi

log() { echo "swift-aio: $*" >&2; }

# ---------------------------------------------------------------- process bookkeeping
# DIR/run/NAME.pid holds "PID STARTTIME" (STARTTIME from /proc, so a recycled pid is
# never killed by mistake).
# /proc/PID/stat: field 3 = state, field 22 = start time (comm has no spaces here)
starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }
record() { echo "$2 $(starttime "$2")" > "$DIR/run/$1.pid"; }
alive() {   # alive PIDFILE -> prints pid when that very process still runs (zombies = dead:
            # the servers are re-parented to PID 1, which may reap them late)
  local pid st
  read -r pid st < "$1" || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  set -- $(awk '{print $3, $22}' "/proc/$pid/stat" 2>/dev/null)
  [ "${1:-Z}" != Z ] && [ "${1:-X}" != X ] && [ "${2:-}" = "$st" ] && echo "$pid"
}
stop() {
  local f pid pids=()
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue
    if pid=$(alive "$f"); then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid:$f")
    else rm -f "$f"; fi
  done
  local p
  for p in "${pids[@]}"; do
    pid=${p%%:*}; f=${p#*:}
    for _ in $(seq 50); do alive "$f" >/dev/null || break; sleep 0.1; done
    if alive "$f" >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$f"
  done
}
status() {
  local f n=0
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue; n=$((n+1))
    alive "$f" >/dev/null || { log "$(basename "$f" .pid) is not running"; return 1; }
  done
  [ "$n" -gt 0 ]
}

# ---------------------------------------------------------------- helpers
free_ports() {   # free_ports N -> N distinct free TCP ports on 127.0.0.1
  "$PY" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
wait_http() {    # wait_http URL DEADLINE(epoch s) [curl args...]
  local url=$1 deadline=$2; shift 2
  until curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    status 2>/dev/null || { log "a server died during start-up"; return 1; }
    sleep 0.1
  done
}

# ---------------------------------------------------------------- Swift
write_swift_conf() {
  local etc=$DIR/etc
  cat > "$etc/swift.conf" <<EOF
[swift-hash]
swift_hash_path_prefix = aio-$RANDOM$RANDOM
swift_hash_path_suffix = aio-$RANDOM$RANDOM

[storage-policy:0]
name = Policy-0
default = yes

[swift-constraints]
container_listing_limit = ${SWIFT_LISTING_LIMIT:-10000}
account_listing_limit = ${SWIFT_LISTING_LIMIT:-10000}
EOF
  # Swift only ever reads /etc/swift/swift.conf (utils.SWIFT_CONF_FILE); this wrapper points
  # it at DIR/etc/swift.conf before anything reads it, then runs the stock WSGI server.
  cat > "$etc/swift-server.py" <<'EOF'
import os
import sys
import time
# SWIFT_PROXY_CLOCK_FILE (tests of ages): the proxies' clock, which stamps each
# object (X-Timestamp) and each answer (Date), runs as many seconds from the
# host's as that file says, read at every look. Set before Swift is imported.
clock = os.environ.get('SWIFT_PROXY_CLOCK_FILE')
if clock and sys.argv[2] == 'proxy':
    host_time = time.time

    def proxy_time():
        try:
            with open(clock) as f:
                return host_time() + float(f.read().strip() or 0)
        except (OSError, ValueError):
            return host_time()
    time.time = proxy_time
import swift.common.utils as utils
utils.SWIFT_CONF_FILE = sys.argv.pop(1)   # must happen before constraints/storage_policy load
server = sys.argv.pop(1)                  # account | container | object | proxy
from swift.common.wsgi import run_wsgi
conf_file, options = utils.parse_options()
sys.exit(run_wsgi(conf_file, server + '-server', **options))
EOF
}

write_rings_and_backends() {   # ACC CON OBJ ports
  local etc=$DIR/etc user; user=$(id -un)
  local name port ports=("$@") i=0 extra
  # rings: 1 replica, 1 device, part power 6 — built in one python process with the library
  # behind swift-ring-builder (the CLI costs ~2.4 s per ring for create+add+rebalance)
  "$PY" - "$etc" "$@" <<'PY'
import sys
from swift.common.ring import RingBuilder
etc, ports = sys.argv[1], sys.argv[2:]
for name, port in zip(("account", "container", "object"), ports):
    b = RingBuilder(6, 1, 1)           # part_power, replicas, min_part_hours
    # same device dict as `swift-ring-builder X.builder add r1z1-127.0.0.1:PORT/d1 100`
    b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port),
               "replication_ip": "127.0.0.1", "replication_port": int(port),
               "device": "d1", "weight": 100.0, "meta": ""})
    b.rebalance()
    b.get_ring().save("%s/%s.ring.gz" % (etc, name))
    b.save("%s/%s.builder" % (etc, name))
PY
  for name in account container object; do
    port=${ports[$i]}; i=$((i+1))
    [ -s "$etc/$name.ring.gz" ] || { log "ring $name not built"; return 1; }
    # An object server's container update slower than its default 1 s becomes an
    # async pending that only an object-updater (not run here) applies: on a loaded
    # machine listings would miss new objects or keep deleted ones.
    extra=""
    [ "$name" != object ] || extra="container_update_timeout = 30"
    cat > "$etc/$name-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
workers = 0
user = $user
swift_dir = $etc
devices = $DIR/srv
mount_check = false
disable_fallocate = true
fallocate_reserve = 0
log_name = $name-server

[pipeline:main]
pipeline = healthcheck $name-server

[filter:healthcheck]
use = egg:swift#healthcheck

[app:$name-server]
use = egg:swift#$name
$extra
EOF
  done
}

write_proxy_conf() {   # NAME PORT "AUTH FILTERS" MEMCACHED_PORT KEYSTONE_PORT
  local name=$1 port=$2 auth=$3 mc=$4 ks=$5 etc=$DIR/etc user tls=""; user=$(id -un)
  [ "${SWIFT_TLS:-0}" = 1 ] && tls="cert_file = $DIR/tls/server.pem
key_file = $DIR/tls/server.key"
  cat > "$etc/$name-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
workers = 0
user = $user
swift_dir = $etc
log_name = $name-server
$tls

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl $auth copy slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

# TempAuth (v1): GET /auth/v1.0 with X-Auth-User/X-Auth-Key -> X-Auth-Token, X-Storage-Url
[filter:tempauth]
use = egg:swift#tempauth
reseller_prefix = AUTH
allow_overrides = true
token_life = ${SWIFT_TOKEN_LIFE:-86400}
user_admin_admin = admin .admin .reseller_admin
user_test_tester = testing .admin
user_test_tester2 = testing2
user_test2_tester2 = testing2 .admin

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = http://127.0.0.1:$ks/v3
auth_url = http://127.0.0.1:$ks/v3
auth_type = password
interface = public
region_name = RegionOne
project_domain_name = Default
user_domain_name = Default
project_name = admin
username = admin
password = adminpw
delay_auth_decision = true
memcached_servers = 127.0.0.1:$mc

[filter:keystoneauth]
use = egg:swift#keystoneauth
reseller_prefix = AUTH_
operator_roles = admin, member

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$mc

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
[filter:symlink]
use = egg:swift#symlink
EOF
}

make_tls() {
  local t=$DIR/tls; mkdir -p "$t"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=swift-aio test CA" \
    -keyout "$t/ca.key" -out "$t/ca.pem" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$t/server.key" -out "$t/server.csr" >/dev/null 2>&1
  # what rustls/webpki wants from a server certificate: v3, SAN, not a CA, serverAuth EKU
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > "$t/ext.cnf"
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
    -days 2 -extfile "$t/ext.cnf" -out "$t/server.pem" >/dev/null 2>&1
}

# ---------------------------------------------------------------- Keystone
keystone_prepare() {   # KS_PORT — config, schema, keys, bootstrap (no server yet)
  local ks=$1 k=$DIR/keystone user group
  user=$(id -un); group=$(id -gn)
  mkdir -p "$k/log"
  cat > "$k/keystone.conf" <<EOF
[DEFAULT]
log_dir = $k/log
[database]
connection = sqlite:///$k/keystone.db
[token]
provider = fernet
expiration = ${KEYSTONE_TOKEN_LIFE:-3600}
[identity]
password_hash_rounds = 4
[fernet_tokens]
key_repository = $k/fernet-keys
[fernet_receipts]
key_repository = $k/fernet-keys
[credential]
key_repository = $k/credential-keys
[oslo_policy]
enforce_new_defaults = false
enforce_scope = false
EOF
  local m=(keystone-manage --config-file "$k/keystone.conf")
  # the three independent steps in parallel (each is ~2 s of python start-up)
  "${m[@]}" db_sync >"$k/log/db_sync.out" 2>&1 & local p1=$!
  "${m[@]}" fernet_setup --keystone-user "$user" --keystone-group "$group" >"$k/log/fernet.out" 2>&1 & local p2=$!
  "${m[@]}" credential_setup --keystone-user "$user" --keystone-group "$group" >"$k/log/credential.out" 2>&1 & local p3=$!
  wait $p1 && wait $p2 && wait $p3 || { log "keystone-manage failed, see $k/log"; return 1; }
  # WAL journal: without it, writes through the API (endpoints, app credentials) under the
  # server can fail after 5 s with sqlite "database is locked".
  "$PY" -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute("pragma journal_mode=wal")' "$k/keystone.db"
  "${m[@]}" bootstrap --bootstrap-password adminpw \
    --bootstrap-username admin --bootstrap-project-name admin --bootstrap-role-name admin \
    --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "http://127.0.0.1:$ks/v3" \
    --bootstrap-internal-url "http://127.0.0.1:$ks/v3" \
    --bootstrap-public-url "http://127.0.0.1:$ks/v3" >"$k/log/bootstrap.out" 2>&1 \
    || { log "keystone bootstrap failed, see $k/log"; return 1; }
}

keystone_start() {     # KS_PORT — stdlib WSGI server from the package (single-threaded)
  local k=$DIR/keystone
  OS_KEYSTONE_CONFIG_FILES=$k/keystone.conf keystone-wsgi-public --host 127.0.0.1 --port "$1" \
    </dev/null >"$DIR/log/keystone.log" 2>&1 &
  record keystone $!
}

keystone_provision() {  # KS_PORT SWIFT_URL_BASE — catalog entry, demo user, app credential
  "$PY" - "http://127.0.0.1:$1/v3" "$2" > "$DIR/keystone/provision.env" <<'PY'
import json, sys, urllib.request
ks, swift = sys.argv[1], sys.argv[2]

def call(method, path, body=None, token=None):
    req = urllib.request.Request(ks + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers, (json.load(r) if r.status != 204 else None)

def password_token(user, pw, project):
    h, _ = call("POST", "/auth/tokens", {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": pw}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}})
    return h["X-Subject-Token"]

admin = password_token("admin", "adminpw", "admin")
_, s = call("POST", "/services", {"service": {"type": "object-store", "name": "swift"}}, admin)
for iface in ("public", "internal", "admin"):
    call("POST", "/endpoints", {"endpoint": {
        "service_id": s["service"]["id"], "interface": iface, "region_id": "RegionOne",
        "url": swift + "/v1/AUTH_$(project_id)s"}}, admin)
_, p = call("POST", "/projects", {"project": {"name": "demo", "domain_id": "default"}}, admin)
_, u = call("POST", "/users", {"user": {"name": "demo", "password": "demopw",
                                        "domain_id": "default", "default_project_id": p["project"]["id"]}}, admin)
_, roles = call("GET", "/roles?name=member", token=admin)
call("PUT", "/projects/%s/users/%s/roles/%s" % (p["project"]["id"], u["user"]["id"],
                                                roles["roles"][0]["id"]), token=admin)
demo = password_token("demo", "demopw", "demo")
_, ac = call("POST", "/users/%s/application_credentials" % u["user"]["id"], {
    "application_credential": {"name": "swift-aio", "secret": "demo-app-secret"}}, demo)
print("OS_DEMO_PROJECT_ID=" + p["project"]["id"])
print("OS_APPLICATION_CREDENTIAL_ID=" + ac["application_credential"]["id"])
print("OS_APPLICATION_CREDENTIAL_SECRET=demo-app-secret")
PY
}

# ---------------------------------------------------------------- start
start() {
  local t0; t0=$(date +%s.%N); started=0
  if [ -d "$DIR/run" ] && status 2>/dev/null; then log "already running in $DIR"; return 1; fi
  { "$PY" -c 'import swift.proxy.server, swift.obj.server' && command -v memcached curl; } >/dev/null 2>&1 ||
    { log "install: apt-get install -y swift swift-proxy swift-account swift-container swift-object memcached curl"; return 1; }
  local have_ks=0
  command -v keystone-manage >/dev/null && "$PY" -c 'import keystonemiddleware.auth_token' 2>/dev/null && have_ks=1
  WITH_KEYSTONE=${WITH_KEYSTONE:-$have_ks}
  if [ "$WITH_KEYSTONE" = 1 ] && [ "$have_ks" = 0 ]; then
    log "install: apt-get install -y keystone python3-keystonemiddleware (or WITH_KEYSTONE=0)"; return 1
  fi
  touch "$MARK"
  rm -rf "$DIR/etc" "$DIR/srv" "$DIR/run" "$DIR/log" "$DIR/keystone" "$DIR/tls" "$DIR/env"
  mkdir -p "$DIR/etc" "$DIR/srv/d1" "$DIR/run" "$DIR/log"
  # any failure from here on (set -e) stops whatever was started
  trap '[ "$started" = 1 ] || { log "start failed; logs in $DIR/log"; stop; }' EXIT

  local p; p=($(free_ports 7))
  local acc=${p[0]} con=${p[1]} obj=${p[2]} mc=${p[3]}
  local proxy=${SWIFT_AIO_PROXY_PORT:-${p[4]}} ks=${SWIFT_AIO_KEYSTONE_PORT:-${p[5]}}
  local ksproxy=${SWIFT_AIO_KEYSTONE_PROXY_PORT:-${p[6]}}
  local scheme=http curl_tls=()
  if [ "${SWIFT_TLS:-0}" = 1 ]; then make_tls; scheme=https; curl_tls=(--cacert "$DIR/tls/ca.pem"); fi

  write_swift_conf
  write_rings_and_backends "$acc" "$con" "$obj"
  # Two proxies over the same rings/backends/memcached, one auth system each:
  #  proxy    : tempauth                   (ST_AUTH, accounts AUTH_<tempauth account>)
  #  proxy-ks : authtoken + keystoneauth   (Keystone catalog, accounts AUTH_<project id>)
  # One proxy with both would make every TempAuth request wait for a Keystone lookup
  # (keystonemiddleware does not cache invalid tokens: ~80 ms instead of ~10 ms each) and
  # a Keystone token on a TempAuth account would get a 500 (tempauth bug with keystoneauth).
  write_proxy_conf proxy "$proxy" tempauth "$mc" "$ks"
  local servers=(account container object proxy)
  if [ "$WITH_KEYSTONE" = 1 ]; then
    write_proxy_conf proxy-ks "$ksproxy" "authtoken keystoneauth" "$mc" "$ks"; servers+=(proxy-ks)
  fi

  local mcuser=(); [ "$(id -u)" = 0 ] && mcuser=(-u root)   # memcached refuses root without -u
  memcached -l 127.0.0.1 -p "$mc" -U 0 -t 2 -m 64 "${mcuser[@]}" </dev/null >"$DIR/log/memcached.log" 2>&1 &
  record memcached $!
  local s
  for s in "${servers[@]}"; do
    "$PY" "$DIR/etc/swift-server.py" "$DIR/etc/swift.conf" "${s%-ks}" "$DIR/etc/$s-server.conf" -v \
      </dev/null >"$DIR/log/$s.log" 2>&1 &
    record "$s" $!
  done
  # Keystone's schema/keys/bootstrap run while the Swift servers import and bind
  if [ "$WITH_KEYSTONE" = 1 ]; then keystone_prepare "$ks"; keystone_start "$ks"; fi

  local deadline=$(( $(date +%s) + ${START_TIMEOUT:-60} ))
  for s in "$acc" "$con" "$obj"; do
    wait_http "http://127.0.0.1:$s/healthcheck" "$deadline" || { log "backend :$s not ready"; false; }
  done
  wait_http "$scheme://127.0.0.1:$proxy/healthcheck" "$deadline" "${curl_tls[@]}" || { log "proxy not ready"; false; }
  if [ "$WITH_KEYSTONE" = 1 ]; then
    wait_http "$scheme://127.0.0.1:$ksproxy/healthcheck" "$deadline" "${curl_tls[@]}" || { log "keystone proxy not ready"; false; }
  fi
  # end-to-end: a TempAuth token and an account HEAD through proxy -> account server
  local tok
  tok=$(curl -fsS "${curl_tls[@]}" -D - -o /dev/null -H 'X-Auth-User: test:tester' -H 'X-Auth-Key: testing' \
        "$scheme://127.0.0.1:$proxy/auth/v1.0" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-auth-token"{print $2}')
  curl -fsS "${curl_tls[@]}" -o /dev/null -I -H "X-Auth-Token: $tok" "$scheme://127.0.0.1:$proxy/v1/AUTH_test"
  if [ "$WITH_KEYSTONE" = 1 ]; then
    wait_http "http://127.0.0.1:$ks/v3" "$deadline" || { log "keystone not ready"; false; }
    keystone_provision "$ks" "${SWIFT_AIO_CATALOG_URL:-$scheme://127.0.0.1:$ksproxy}"
  fi
  started=1

  {
    echo "ST_AUTH=$scheme://127.0.0.1:$proxy/auth/v1.0"
    echo "ST_USER=test:tester"
    echo "ST_KEY=testing"
    echo "SWIFT_PROXY_PORT=$proxy"
    echo "SWIFT_ACCOUNT_PORT=$acc"
    echo "SWIFT_CONTAINER_PORT=$con"
    echo "SWIFT_OBJECT_PORT=$obj"
    echo "SWIFT_MEMCACHED_PORT=$mc"
    [ "${SWIFT_TLS:-0}" = 1 ] && echo "SWIFT_CACERT=$DIR/tls/ca.pem"
    if [ "$WITH_KEYSTONE" = 1 ]; then
      echo "SWIFT_KEYSTONE_PROXY_PORT=$ksproxy"
      echo "KEYSTONE_PORT=$ks"
      echo "OS_AUTH_URL=http://127.0.0.1:$ks/v3"
      echo "OS_USERNAME=demo"
      echo "OS_PASSWORD=demopw"
      echo "OS_PROJECT_NAME=demo"
      echo "OS_USER_DOMAIN_NAME=Default"
      echo "OS_PROJECT_DOMAIN_NAME=Default"
      echo "OS_REGION_NAME=RegionOne"
      echo "OS_INTERFACE=public"
      echo "OS_ADMIN_USERNAME=admin"
      echo "OS_ADMIN_PASSWORD=adminpw"
      echo "OS_ADMIN_PROJECT_NAME=admin"
      cat "$DIR/keystone/provision.env"
    fi
  } > "$DIR/env.tmp"
  sed 's/^/export /' "$DIR/env.tmp" > "$DIR/env"
  cat "$DIR/env.tmp"; rm -f "$DIR/env.tmp"
  log "ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s (keystone=$WITH_KEYSTONE); stop with: $0 stop $DIR"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status DIR" >&2; exit 2 ;;
esac
