#!/usr/bin/env bash
# `make demo`: the main job end to end on local-directory storage, in a
# temporary directory that is removed afterwards. Needs redis-server and
# redis-cli (the Makefile installs them) and a built binary in $BIN.
#
# The throwaway redis-server is run as a "unit" of the test suite's stand-in
# systemctl (tests/support/systemctl), so that restore can stop and start it
# the way it stops and starts the real service, without touching this
# machine's own Redis or needing systemd.
set -euo pipefail

BIN=$(realpath "${BIN:-target/release/redis-backup}")
work=$(mktemp -d /tmp/redis-backup-demo.XXXXXX)
port=$((20000 + RANDOM % 20000))
check_port=$((port + 1))

export PATH="$(realpath tests/support):$PATH"
export SYSTEMCTL_SHIM_DIR="$work/systemd"
unit=redis-demo
mkdir -p "$SYSTEMCTL_SHIM_DIR"

cleanup() {
    systemctl stop "$unit" >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || redis-cli -p "$check_port" shutdown nosave >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

wait_for_redis() {
    for _ in $(seq 100); do
        # PING answers -LOADING while the dataset is still being read.
        [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    echo "redis-server on port $1 did not start" >&2
    exit 1
}

write_conf() { # port dir
    mkdir -p "$2"
    cat >"$2/redis.conf" <<CONF
port $1
bind 127.0.0.1
dir $2
dbfilename dump.rdb
daemonize yes
pidfile $2/redis.pid
logfile $2/redis.log
enable-debug-command yes
CONF
}

start_redis() { # port dir
    write_conf "$1" "$2"
    redis-server "$2/redis.conf"
    wait_for_redis "$1"
}

step "starting a throwaway redis-server on port $port in $work"
write_conf "$port" "$work/redis"
echo "$work/redis/redis.conf" >"$SYSTEMCTL_SHIM_DIR/$unit.conf"
systemctl start "$unit"
wait_for_redis "$port"

step "filling it: 200000 strings, hashes, lists, sets, sorted sets, a stream, in two databases"
redis-cli -p "$port" debug populate 200000 key 64 >/dev/null
{
    for i in $(seq 1 200); do
        echo "HSET user:$i name user$i email user$i@example.com visits $i"
        echo "RPUSH queue:$((i % 10)) job$i"
        echo "SADD tags:$((i % 7)) tag$i"
        echo "ZADD board $i player$i"
        echo "XADD events * n $i"
        echo "SET session:$i token$i EX 3600"
    done
} | redis-cli -p "$port" >/dev/null
{
    echo "SELECT 1"
    for i in $(seq 1 100); do echo "SET cache:$i value$i"; done
} | redis-cli -p "$port" >/dev/null
before=$(redis-cli -p "$port" debug digest)
echo "keys: db0 $(redis-cli -p "$port" -n 0 dbsize), db1 $(redis-cli -p "$port" -n 1 dbsize); digest $before"

cat >"$work/redis-backup.conf" <<CONF
redis_conf = $work/redis/redis.conf
storage = file://$work/backups
key_file = $work/backup.key
lock_file = $work/redis-backup.lock
service = $unit
CONF
rb() { "$BIN" -c "$work/redis-backup.conf" "$@"; }

step "redis-backup keygen"
rb keygen --out "$work/backup.key"
ls -l "$work/backup.key"

step "redis-backup backup"
id=$(rb backup | tail -n 1)
echo "backup ID: $id"

step "redis-backup list / show"
rb list
rb show "$id"

step "redis-backup verify $id"
rb verify "$id"

step "redis-backup export $id"
rb export "$id" --out "$work/exported.rdb"
recorded=$(rb show "$id" --json | sed -n 's/.*"raw_sha256": "\([0-9a-f]*\)".*/\1/p')
actual=$(sha256sum "$work/exported.rdb" | cut -d' ' -f1)
echo "recorded sha256: $recorded"
echo "exported sha256: $actual"
[ "$recorded" = "$actual" ] || { echo "MISMATCH" >&2; exit 1; }
cmp "$work/exported.rdb" "$work/redis/dump.rdb"
echo "the exported RDB is byte for byte the dump Redis wrote"

step "loading the exported RDB into a second redis-server"
mkdir -p "$work/check"
cp "$work/exported.rdb" "$work/check/dump.rdb"
start_redis "$check_port" "$work/check"
after=$(redis-cli -p "$check_port" debug digest)
echo "digest of the original: $before"
echo "digest of the restored: $after"
[ "$before" = "$after" ] || { echo "DIGESTS DIFFER" >&2; exit 1; }

step "changing the data after the backup: a new key, a deleted key, a flushed database"
redis-cli -p "$port" set written-after-backup yes >/dev/null
redis-cli -p "$port" del user:1 >/dev/null
redis-cli -p "$port" -n 1 flushdb >/dev/null
echo "digest now: $(redis-cli -p "$port" debug digest)"

step "redis-backup restore $id"
rb restore "$id"
wait_for_redis "$port"
restored=$(redis-cli -p "$port" debug digest)
echo "digest at backup time: $before"
echo "digest after restore:  $restored"
[ "$before" = "$restored" ] || { echo "DIGESTS DIFFER" >&2; exit 1; }
[ -z "$(redis-cli -p "$port" get written-after-backup)" ] || { echo "key written after the backup survived" >&2; exit 1; }
echo "the data is exactly as it was at backup time"

step "demo finished: backup, verify, export and restore work end to end"
