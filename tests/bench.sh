#!/usr/bin/env bash
# `make bench`: speed and memory of redis-backup against reference pipelines,
# all on the same RDB in one run (these machines are noisy: only the ratios
# within one run mean anything). Prints one table and writes it, with the date
# and the machine, to vendor-notes/PERFORMANCE.md.
#
# Datasets, generated once in a real redis-server and cached in $BENCH_CACHE:
# mixed-large, 1.5 million keys of mixed types and sizes (tests/bench-mixed.lua:
# JSON documents with varied text, sessions and tokens, hashes, lists, sets,
# sorted sets, counters, binary blobs), the one the targets are judged on;
# mixed-small and mixed-1gb, the same kind at about 10 MB and 1 GB, to show
# that memory does not grow; templated-large, values that are templates around sequential numbers
# (tests/bench-templated.lua), far more compressible than real data.
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

# Datasets are made inside Redis by a Lua script (fast, no client round
# trips), saved, and cached as RDB files.
generate() { # script keys-in-thousands file
    systemctl start "$unit"
    wait_ready
    redis-cli -p "$port" flushall >/dev/null
    redis-cli -p "$port" --eval "$1" , "$2" 42 >/dev/null
    redis-cli -p "$port" save >/dev/null
    systemctl stop "$unit"
    cp "$work/data/dump.rdb" "$3"
}

# name:script:thousands-of-keys. The generator's name is in the cache file's
# name, so changing a generator means renaming it (or emptying the cache).
DATASETS=${BENCH_DATASETS:-"mixed-large:mixed:1500 mixed-small:mixed:40 mixed-1gb:mixed:4000 templated-large:templated:1500"}
for set in $DATASETS; do
    IFS=: read -r name script thousands <<<"$set"
    file="$CACHE/$script-${thousands}k.rdb"
    [ -s "$file" ] || {
        echo "generating the $name dataset (cached in $file)"
        generate "tests/bench-$script.lua" "$thousands" "$file"
    }
done

# seconds and peak RSS (KiB) of a command; its output goes to $2 (or nowhere)
measure() { # label outfile command...
    local label=$1 out=$2
    shift 2
    # Every run starts with no dirty pages: the files earlier runs wrote
    # would otherwise be written back during (and charged to) later ones.
    sync
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$out" 2>"$work/stderr" ||
        { echo "$label failed:" >&2; cat "$work/stderr" >&2; exit 1; }
    read -r SECS RSS <"$work/time"
}

median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
mbps() { echo "$1 $2" | awk '{ printf "%.0f", $1 / 1e6 / ($2 > 0 ? $2 : 0.001) }'; }
ratio() { echo "$1 $2" | awk '{ printf "%.2f", ($2 > 0 ? $1 / $2 : 0) }'; }

table=""
verdicts=""
row() { # name seconds rss stored_bytes reference_mbps
    local speed
    speed=$(mbps "$RAW" "$2")
    LAST_MBPS=$speed
    table+=$(printf '| %-44s | %8s | %6s | %6s MiB | %s |' "$1" "$speed" "$(ratio "$speed" "$5")" \
        "$(($3 / 1024))" "${4:+$(ratio "$4" "$GZIP6")}")$'\n'
}

# verdict "what" value op limit: one line of the targets list.
verdict() {
    local ok
    ok=$(echo "$2 $4" | awk -v op="$3" '{ print (op == ">=" ? $1 >= $2 : $1 <= $2) ? "met" : "NOT met" }')
    verdicts+="- $1: $2 (target $3 $4): **$ok**"$'\n'
}

run_dataset() { # name rdb-file
    local name=$1 rdb=$2
    RAW=$(stat -c %s "$rdb")
    cp "$rdb" "$work/data/dump.rdb"
    systemctl start "$unit"
    wait_ready
    table+=$'\n'"### $name: RDB $((RAW / 1048576)) MiB, $(redis-cli -p "$port" dbsize) keys"$'\n\n'
    table+="| pipeline | MB/s of RDB | × Trove | peak RSS | stored / gzip -6 |"$'\n'
    table+="|---|---|---|---|---|"$'\n'
    local trove reverse pigz="" backup_mbps export_mbps staging_mbps max_rss=0

    measure "gzip -6" "$work/ref.gz" gzip -6 -c "$rdb"
    GZIP6=$(stat -c %s "$work/ref.gz")
    rm -f "$work/ref.gz"
    measure "trove" "$work/trove.enc" sh -c "gzip -6 -c '$rdb' | openssl enc -aes-256-cbc -pbkdf2 -pass pass:bench"
    trove=$(mbps "$RAW" "$SECS")
    row "Trove: gzip -6, openssl enc (backup)" "$SECS" "$RSS" "$(stat -c %s "$work/trove.enc")" "$trove"
    measure "gzip -1" "$work/ref1.gz" gzip -1 -c "$rdb"
    row "gzip -1" "$SECS" "$RSS" "$(stat -c %s "$work/ref1.gz")" "$trove"
    rm -f "$work/ref1.gz"
    if command -v pigz >/dev/null; then
        measure "pigz" "$work/ref.pz" pigz -1 -p "$CORES" -c "$rdb"
        row "pigz -1 -p $CORES" "$SECS" "$RSS" "$(stat -c %s "$work/ref.pz")" "$trove"
        rm -f "$work/ref.pz"
        pigz=$LAST_MBPS
    fi
    if command -v zstd >/dev/null; then
        measure "zstd" "$work/ref.zst" zstd -1 -T0 -c "$rdb"
        row "zstd -1 -T0" "$SECS" "$RSS" "$(stat -c %s "$work/ref.zst")" "$trove"
        rm -f "$work/ref.zst"
    fi

    # The backup's own stream time (from the moment the dump exists) is in
    # its log line "stream: ... in N s"; the process's RSS is the whole run.
    measure "backup" "$work/id" "$BIN" -c "$work/settings.conf" backup --id "bench-$name"
    local stream_secs stored
    stream_secs=$(sed -n 's/.*stream: .* stored in \([0-9.]*\)s.*/\1/p' "$work/stderr")
    stored=$(stat -c %s "$work/backups/bench-$name.rbk")
    row "redis-backup backup (stream only)" "$stream_secs" "$RSS" "$stored" "$trove"
    backup_mbps=$LAST_MBPS
    max_rss=$((RSS > max_rss ? RSS : max_rss))

    # The decodes take a second or three, short next to this machine's
    # noise: three interleaved rounds of Trove's reverse, verify and export,
    # and each row takes its median time (and its highest RSS).
    local round reverse_runs=() verify_runs=() export_runs=() reverse_rss=0 verify_rss=0 export_rss=0
    for round in 1 2 3; do
        # Into a file, as a restore (and our export) must write the RDB.
        measure "trove reverse" /dev/null sh -c "openssl enc -d -aes-256-cbc -pbkdf2 -pass pass:bench -in '$work/trove.enc' | gzip -dc >'$work/trove.rdb'"
        rm -f "$work/trove.rdb"
        reverse_runs+=("$SECS")
        reverse_rss=$((RSS > reverse_rss ? RSS : reverse_rss))
        measure "verify" /dev/null "$BIN" -q -c "$work/settings.conf" verify "bench-$name"
        verify_runs+=("$SECS")
        verify_rss=$((RSS > verify_rss ? RSS : verify_rss))
        measure "export" /dev/null "$BIN" -q -c "$work/settings.conf" export "bench-$name" --out "$work/export.rdb"
        rm -f "$work/export.rdb"
        export_runs+=("$SECS")
        export_rss=$((RSS > export_rss ? RSS : export_rss))
    done
    reverse=$(mbps "$RAW" "$(median "${reverse_runs[@]}")")
    row "Trove reverse: openssl enc -d, gzip -d ‡" "$(median "${reverse_runs[@]}")" "$reverse_rss" "" "$reverse"
    row "redis-backup verify ‡" "$(median "${verify_runs[@]}")" "$verify_rss" "" "$reverse"
    row "redis-backup export ‡" "$(median "${export_runs[@]}")" "$export_rss" "" "$reverse"
    export_mbps=$LAST_MBPS
    max_rss=$((max_rss > verify_rss ? max_rss : verify_rss))
    max_rss=$((max_rss > export_rss ? max_rss : export_rss))
    # As for the backup, the restore's own part is in its log: "staged and
    # verified ... in N s" covers reading, checking and writing the RDB
    # before Redis is touched; the whole run adds Redis's stop, start and load.
    measure "restore" /dev/null "$BIN" -c "$work/settings.conf" restore "bench-$name"
    local staging_secs
    staging_secs=$(sed -n 's/.*staged and verified .* in \([0-9.]*\)s.*/\1/p' "$work/stderr")
    row "redis-backup restore (incl. stop/start/load) ‡" "$SECS" "$RSS" "" "$reverse"
    row "redis-backup restore (staging only) ‡" "$staging_secs" "$RSS" "" "$reverse"
    staging_mbps=$LAST_MBPS
    max_rss=$((RSS > max_rss ? RSS : max_rss))

    verdicts+=$'\n'"$name:"$'\n'
    # The speed targets are set on a ~300 MB RDB; a 10 MB one is there to show
    # memory does not grow, and is over in a few hundredths of a second.
    if [ "$RAW" -ge 200000000 ]; then
        verdict "backup × Trove" "$(ratio "$backup_mbps" "$trove")" ">=" 8
        verdict "export × Trove's reverse" "$(ratio "$export_mbps" "$reverse")" ">=" 3
        # Export is the restore's decode into a file, as the reverse is. A
        # restore's staging keeps the RDB in the page cache for Redis's load,
        # which shortens the outage and costs its writer fresh pages: shown.
        verdicts+="- restore, staging only, × Trove's reverse: $(ratio "$staging_mbps" "$reverse") (shown, not judged: see Reading the numbers)"$'\n'
        [ -n "$pigz" ] && verdict "backup × pigz -1" "$(ratio "$backup_mbps" "$pigz")" ">=" 1
    else
        verdicts+="- speed: not judged on an RDB under 200 MB (too short to time)"$'\n'
    fi
    verdict "stored / gzip -6" "$(ratio "$stored" "$GZIP6")" "<=" 1.2
    verdict "peak RSS of backup, verify, export, restore (MiB)" "$((max_rss / 1024))" "<=" 32
    systemctl stop "$unit"
    rm -rf "$work/data"/* "$work/backups"
}

for set in $DATASETS; do
    IFS=: read -r name script thousands <<<"$set"
    run_dataset "$name" "$CACHE/$script-${thousands}k.rdb"
done

# Point-in-time recovery (issue 16): the archiver follows a primary that
# redis-benchmark fills with small SETs as fast as it can. Then: how long
# until the archive holds every write (WAIT 1 on the primary returns once
# the archiver has *stored* the offset it acknowledges), the archiver's peak
# RSS, and a replay of the whole window (export --at its end) in commands
# per second, server start, load and save included.
run_pitr() {
    local sets=${BENCH_PITR_SETS:-2000000}
    rm -rf "${work:?}/data"/* "$work/backups"
    systemctl start "$unit"
    wait_ready
    cp "$work/settings.conf" "$work/pitr.conf"
    echo "archive_interval = 1" >>"$work/pitr.conf"
    "$BIN" -q -c "$work/pitr.conf" archive 2>"$work/archive.log" &
    local archiver=$! out rate started caught rss to commands replay_rate
    for _ in $(seq 200); do
        "$BIN" -q -c "$work/pitr.conf" --json timeline 2>/dev/null | grep -q '"to"' && break
        sleep 0.1
    done
    out=$(redis-benchmark -p "$port" -t set -n "$sets" -r 1000000 -d 16 -c 50 -P 16 -q 2>/dev/null | tr '\r' '\n' | grep 'requests per second' | tail -1)
    rate=$(echo "$out" | sed -n 's/.*SET: \([0-9.]*\) requests per second.*/\1/p')
    started=$(date +%s.%N)
    [ "$(redis-cli -p "$port" wait 1 300000)" = 1 ] || { echo "the archiver never caught up" >&2; cat "$work/archive.log" >&2; exit 1; }
    caught=$(echo "$(date +%s.%N) $started" | awk '{ printf "%.1f", $1 - $2 }')
    rss=$(awk '/VmHWM/ { print $2 }' "/proc/$archiver/status")
    kill -TERM "$archiver"
    wait "$archiver" || { echo "the archiver failed:" >&2; cat "$work/archive.log" >&2; exit 1; }
    to=$("$BIN" -q -c "$work/pitr.conf" --json timeline | grep -o '"to": *"[^"]*"' | tail -1 | sed 's/.*"\([^"]*\)"$/\1/')
    measure "replay" "$work/replay.json" "$BIN" -q -c "$work/pitr.conf" --json export --at "$to" --out "$work/replayed.rdb"
    commands=$(grep -o '"commands": *[0-9]*' "$work/replay.json" | grep -o '[0-9]*$')
    replay_rate=$(echo "$commands $SECS" | awk '{ printf "%.0f", $1 / ($2 > 0 ? $2 : 0.001) }')
    rm -f "$work/replayed.rdb"
    systemctl stop "$unit"
    table+=$'\n'"### point-in-time recovery: $sets SETs of 16 bytes from redis-benchmark (-c 50 -P 16)"$'\n\n'
    table+="| what | value |"$'\n'"|---|---|"$'\n'
    table+="| writes/s the primary took while archived | ${rate%.*} |"$'\n'
    table+="| archive complete after the last write (WAIT 1) | ${caught} s |"$'\n'
    table+="| archiver peak RSS | $((rss / 1024)) MiB |"$'\n'
    table+="| replay of the window (export --at its end) | $commands commands in ${SECS} s: $replay_rate commands/s, peak RSS $((RSS / 1024)) MiB |"$'\n'
    verdicts+=$'\n'"point-in-time recovery:"$'\n'
    verdict "writes/s archived (redis-benchmark SETs)" "${rate%.*}" ">=" 50000
    verdict "archive complete after the burst (s, archive_interval 1)" "$caught" "<=" 5
    verdict "archiver peak RSS (MiB)" "$((rss / 1024))" "<=" 64
    verdict "replay (commands/s)" "$replay_rate" ">=" 100000
}
[ "${BENCH_PITR:-yes}" = no ] || run_pitr

binary=$(stat -c %s "$BIN")
verdicts+=$'\n'"binary:"$'\n'
# In bytes: rounded to MB, 3,004,000 would pass as 3.00. The design card's
# limit: at most 3.0 MB stripped with every feature.
verdict "stripped binary (bytes)" "$binary" "<=" 3000000
measured="<!-- bench:begin (written by make bench; edit outside these marks) -->
Measured by \`make bench\` on $(date -u +%Y-%m-%d), $(uname -m), $CORES cores
($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), redis-backup $("$BIN" -V | cut -d' ' -f2).
MB/s are of plain RDB. × Trove is the ratio to Trove's old backup pipeline in
the same run, or, for the rows marked ‡, to its reverse (decrypt and gunzip
into a file). The reverse, verify and export rows are the median of three
interleaved rounds. Binary: $binary bytes (stripped, TLS included).

Targets (issue 6), judged in this run:
$verdicts$table<!-- bench:end -->"
echo "$measured"
if grep -q '^<!-- bench:begin' "$OUT" 2>/dev/null && grep -q '^<!-- bench:end -->' "$OUT"; then
    # Keep the hand-written analysis around the measured part.
    awk -v measured="$measured" '
        /^<!-- bench:begin/ { print measured; skip = 1; next }
        /^<!-- bench:end -->/ { skip = 0; next }
        !skip { print }' "$OUT" >"$OUT.new"
    mv "$OUT.new" "$OUT"
else
    printf '# Performance\n\n%s\n' "$measured" >"$OUT"
fi
echo "written to $OUT"
