#!/usr/bin/env bash
# `make bench`: speed and memory of redis-backup against reference pipelines,
# all on the same RDB in one run (these machines are noisy: only the ratios
# within one run mean anything). Prints one table and writes it, with the date
# and the machine, to vendor-notes/PERFORMANCE.md.
#
# Dataset: ~1.5 million keys of mixed types with JSON-like values (RDB over
# 200 MB), generated once in a real redis-server and cached in $BENCH_CACHE.
# Then the same for a ~10 MB RDB, to show that memory does not grow.
set -euo pipefail

BIN=$(realpath "${BIN:-target/release/redis-backup}")
CACHE=${BENCH_CACHE:-/var/tmp/redis-backup-bench}
OUT=${BENCH_OUT:-vendor-notes/PERFORMANCE.md}
CORES=$(nproc)
work=$(mktemp -d /tmp/redis-backup-bench.XXXXXX)
port=$((20000 + RANDOM % 20000))
export PATH="$(realpath tests/support):$PATH"
export SYSTEMCTL_SHIM_DIR="$work/systemd"
unit=redis-bench
mkdir -p "$CACHE" "$SYSTEMCTL_SHIM_DIR" "$work/data"

cleanup() {
    systemctl stop "$unit" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/redis.conf" <<CONF
port $port
bind 127.0.0.1
dir $work/data
dbfilename dump.rdb
save ""
appendonly no
enable-debug-command yes
CONF
echo "$work/redis.conf" >"$SYSTEMCTL_SHIM_DIR/$unit.conf"
cat >"$work/settings.conf" <<CONF
redis_conf = $work/redis.conf
storage = file://$work/backups
key_file = $work/backup.key
lock_file = $work/lock
service = $unit
CONF
"$BIN" -q keygen --out "$work/backup.key" >/dev/null

rb() { "$BIN" -q -c "$work/settings.conf" "$@"; }

wait_ready() {
    for _ in $(seq 600); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    echo "redis-server did not come up" >&2
    exit 1
}

# JSON-like documents, hashes, lists, sets and sorted sets, made inside Redis
# by a Lua script (fast, and no client round trips).
generate() { # keys-in-thousands file
    local k=$1
    systemctl start "$unit"
    wait_ready
    redis-cli -p "$port" flushall >/dev/null
    redis-cli -p "$port" eval "
        local n = tonumber(ARGV[1]) * 1000
        for i = 1, n * 0.8 do
            redis.call('SET', 'doc:' .. i, '{\"id\":' .. i .. ',\"name\":\"user ' .. i ..
                '\",\"email\":\"user' .. i .. '@example.com\",\"active\":' .. tostring(i % 3 == 0) ..
                ',\"score\":' .. (i * 7919 % 100000) / 100 .. ',\"tags\":[\"t' .. (i % 17) .. '\",\"t' .. (i % 29) ..
                '\"],\"address\":{\"city\":\"City' .. (i % 1000) .. '\",\"zip\":\"' .. (10000 + i % 89999) .. '\"}}')
        end
        for i = 1, n * 0.08 do
            redis.call('HSET', 'user:' .. i, 'name', 'user' .. i, 'visits', i, 'plan', 'p' .. (i % 5), 'last', 1700000000 + i)
        end
        for i = 1, n * 0.04 do
            redis.call('RPUSH', 'queue:' .. i, 'job-a-' .. i, 'job-b-' .. i, 'job-c-' .. i)
        end
        for i = 1, n * 0.04 do
            redis.call('SADD', 'tags:' .. i, 'x' .. i, 'y' .. (i % 100), 'z' .. (i % 7))
        end
        for i = 1, n * 0.04 do
            redis.call('ZADD', 'board:' .. i, i, 'a' .. i, i * 2, 'b' .. i)
        end
        return n
    " 0 "$k" >/dev/null
    redis-cli -p "$port" save >/dev/null
    systemctl stop "$unit"
    cp "$work/data/dump.rdb" "$2"
}

for size in large:1500 small:70; do
    name=${size%%:*}
    [ -s "$CACHE/$name.rdb" ] || { echo "generating the $name dataset (cached in $CACHE)"; generate "${size##*:}" "$CACHE/$name.rdb"; }
done

# seconds and peak RSS (KiB) of a command; its output goes to $2 (or nowhere)
measure() { # label outfile command...
    local label=$1 out=$2
    shift 2
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$out" 2>"$work/stderr" ||
        { echo "$label failed:" >&2; cat "$work/stderr" >&2; exit 1; }
    read -r SECS RSS <"$work/time"
}

mbps() { echo "$1 $2" | awk '{ printf "%.0f", $1 / 1e6 / ($2 > 0 ? $2 : 0.001) }'; }
ratio() { echo "$1 $2" | awk '{ printf "%.2f", ($2 > 0 ? $1 / $2 : 0) }'; }

table=""
row() { # name seconds rss stored_bytes
    local speed
    speed=$(mbps "$RAW" "$2")
    table+=$(printf '| %-40s | %8s | %6s | %6s MiB | %s |' "$1" "$speed" "$(ratio "$speed" "$TROVE_MBPS")" \
        "$(($3 / 1024))" "${4:+$(ratio "$4" "$GZIP6")}")$'\n'
}

run_size() { # name
    local name=$1 rdb="$CACHE/$1.rdb"
    RAW=$(stat -c %s "$rdb")
    cp "$rdb" "$work/data/dump.rdb"
    systemctl start "$unit"
    wait_ready
    table+=$'\n'"### $name dataset: RDB $((RAW / 1048576)) MiB, $(redis-cli -p "$port" dbsize) keys"$'\n\n'
    table+="| pipeline | MB/s of RDB | × Trove | peak RSS | stored / gzip -6 |"$'\n'
    table+="|---|---|---|---|---|"$'\n'

    measure "gzip -6" "$work/ref.gz" gzip -6 -c "$rdb"
    GZIP6=$(stat -c %s "$work/ref.gz")
    measure "trove" "$work/trove.enc" sh -c "gzip -6 -c '$rdb' | openssl enc -aes-256-cbc -pbkdf2 -pass pass:bench"
    TROVE_MBPS=$(mbps "$RAW" "$SECS")
    row "Trove: gzip -6, openssl enc (backup)" "$SECS" "$RSS" "$(stat -c %s "$work/trove.enc")"
    measure "trove reverse" /dev/null sh -c "openssl enc -d -aes-256-cbc -pbkdf2 -pass pass:bench -in '$work/trove.enc' | gzip -dc"
    row "Trove reverse: openssl enc -d, gzip -d" "$SECS" "$RSS" ""
    measure "gzip -1" "$work/ref1.gz" gzip -1 -c "$rdb"
    row "gzip -1" "$SECS" "$RSS" "$(stat -c %s "$work/ref1.gz")"
    if command -v pigz >/dev/null; then
        measure "pigz" "$work/ref.pz" pigz -1 -p "$CORES" -c "$rdb"
        row "pigz -1 -p $CORES" "$SECS" "$RSS" "$(stat -c %s "$work/ref.pz")"
    fi
    if command -v zstd >/dev/null; then
        measure "zstd" "$work/ref.zst" zstd -1 -T0 -c "$rdb"
        row "zstd -1 -T0" "$SECS" "$RSS" "$(stat -c %s "$work/ref.zst")"
    fi

    # The backup's own stream time (from the moment the dump exists) is in
    # its log line "stream: ... in N s"; the process's RSS is the whole run.
    measure "backup" "$work/id" "$BIN" -c "$work/settings.conf" backup --id "bench-$name"
    local stream_secs stored
    stream_secs=$(sed -n 's/.*stream: .* stored in \([0-9.]*\)s.*/\1/p' "$work/stderr")
    stored=$(stat -c %s "$work/backups/bench-$name.rbk")
    row "redis-backup backup (stream only)" "$stream_secs" "$RSS" "$stored"
    measure "verify" /dev/null "$BIN" -q -c "$work/settings.conf" verify "bench-$name"
    row "redis-backup verify" "$SECS" "$RSS" ""
    rm -f "$work/export.rdb"
    measure "export" /dev/null "$BIN" -q -c "$work/settings.conf" export "bench-$name" --out "$work/export.rdb"
    row "redis-backup export" "$SECS" "$RSS" ""
    measure "restore" /dev/null "$BIN" -q -c "$work/settings.conf" restore "bench-$name"
    row "redis-backup restore (incl. stop/start/load)" "$SECS" "$RSS" ""
    systemctl stop "$unit"
    rm -rf "$work/data"/* "$work/backups"
}

run_size large
run_size small

binary=$(stat -c %s "$BIN")
report="# Performance

Measured by \`make bench\` on $(date -u +%Y-%m-%d), $(uname -m), $CORES cores
($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), redis-backup $("$BIN" -V | cut -d' ' -f2).
MB/s are of plain RDB; × Trove is the ratio to Trove's old pipeline in the same run.
Binary: $binary bytes (stripped, TLS included).
$table"
echo "$report"
echo "$report" >"$OUT"
echo "written to $OUT"
