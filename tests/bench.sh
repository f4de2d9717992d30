#!/usr/bin/env bash
# `make bench`: how fast a backup, verify and export run, and how much memory
# they take, against reference runs made in the same invocation (these machines
# are noisy, so only ratios mean anything):
#   - `cat dump.rdb > /dev/null`: the cost of just reading the RDB;
#   - `gzip -1 -c dump.rdb > /dev/null`: a classic one-thread compressor;
#   - redis-server's own BGSAVE of the same data.
# Memory: peak RSS of redis-backup, which must not grow with the dataset; it is
# measured at two dataset sizes to show that.
# BENCH_KEYS (default 3000000) sets the size of the larger dataset.
set -euo pipefail

BIN=$(realpath "${BIN:-target/release/redis-backup}")
KEYS=${BENCH_KEYS:-3000000}
work=$(mktemp -d /tmp/redis-backup-bench.XXXXXX)
port=$((20000 + RANDOM % 20000))
cleanup() {
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

seconds() { # command... → wall seconds on stdout (command output discarded)
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>"$work/stderr" || { echo "failed: $*" >&2; cat "$work/stderr" >&2; exit 1; }
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

peak_kib() { # command... → peak RSS in KiB
    /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1
}

ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }

mkdir -p "$work/data"
cat >"$work/redis.conf" <<CONF
port $port
bind 127.0.0.1
dir $work/data
dbfilename dump.rdb
save ""
enable-debug-command yes
daemonize yes
pidfile $work/redis.pid
logfile $work/redis.log
CONF
redis-server "$work/redis.conf"
for _ in $(seq 100); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
done

cat >"$work/settings.conf" <<CONF
redis_conf = $work/redis.conf
storage = file://$work/backups
key_file = $work/backup.key
lock_file = $work/lock
CONF
"$BIN" keygen --out "$work/backup.key" >/dev/null
rb() { "$BIN" -q -c "$work/settings.conf" "$@"; }

measure() { # label keys
    redis-cli -p "$port" flushall >/dev/null
    redis-cli -p "$port" debug populate "$2" key 100 >/dev/null
    local bgsave_t dump size cat_t gzip_t backup_t verify_t export_t backup_mem verify_mem id
    bgsave_t=$(seconds redis-cli -p "$port" save)
    dump="$work/data/dump.rdb"
    cp "$dump" "$work/reference.rdb"
    size=$(stat -c %s "$work/reference.rdb")
    cat_t=$(seconds cat "$work/reference.rdb")
    gzip_t=$(seconds gzip -1 -c "$work/reference.rdb")
    backup_t=$(seconds rb backup --id "bench-$1")
    backup_mem=$(peak_kib "$BIN" -q -c "$work/settings.conf" backup --id "bench-$1-mem")
    id="bench-$1"
    verify_t=$(seconds rb verify "$id")
    verify_mem=$(peak_kib "$BIN" -q -c "$work/settings.conf" verify "$id")
    rm -f "$work/exported.rdb"
    export_t=$(seconds rb export "$id" --out "$work/exported.rdb")
    echo
    echo "== $1: $2 keys, RDB $((size / 1048576)) MiB"
    printf '  %-34s %8.2fs\n' "reference: cat RDB" "$cat_t" \
        "reference: gzip -1" "$gzip_t" "reference: Redis SAVE" "$bgsave_t" \
        "redis-backup backup (incl. BGSAVE)" "$backup_t" \
        "redis-backup verify" "$verify_t" "redis-backup export" "$export_t"
    echo "  backup / (Redis SAVE + gzip -1): $(ratio "$backup_t" "$(echo "$bgsave_t + $gzip_t" | bc -l)")"
    echo "  verify time / gzip -1 time:      $(ratio "$verify_t" "$gzip_t")"
    echo "  backup MiB/s: $(printf '%.0f' "$(echo "$size / 1048576 / $backup_t" | bc -l)")"
    echo "  peak RSS: backup $((backup_mem / 1024)) MiB, verify $((verify_mem / 1024)) MiB"
    last_mem=$backup_mem
}

measure small $((KEYS / 10))
small_mem=$last_mem
measure large "$KEYS"
large_mem=$last_mem
echo
echo "peak RSS, large / small dataset (10x the data): $(ratio "$large_mem" "$small_mem") (flat memory: about 1)"
