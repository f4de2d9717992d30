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
    [ -d "$work/swift" ] && bash tests/support/swift-aio.sh stop "$work/swift" >/dev/null 2>&1
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

# PONG only once the dataset is loaded (a loading server answers LOADING).
# Polled every 20 ms, as restore polls, so both outages are timed alike.
wait_ready() {
    for _ in $(seq 3000); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.02
    done
    echo "redis-server did not come up" >&2
    exit 1
}

now() { date +%s.%N; }
since() { echo "$(now) $1" | awk '{ printf "%.2f", $1 - $2 }'; }

# Swift (issue 18): the all-in-one the tests start, with TempAuth, on this
# same machine, so its proxy and object server share these cores with us.
# python-swiftclient is the reference for moving the same bytes.
SWIFT=""
if [ "${BENCH_SWIFT:-yes}" != no ] && command -v swift-proxy-server >/dev/null && command -v swift >/dev/null; then
    WITH_KEYSTONE=0 bash tests/support/swift-aio.sh start "$work/swift" >/dev/null 2>"$work/swift.log" ||
        { echo "the Swift all-in-one did not start:" >&2; cat "$work/swift.log" >&2; exit 1; }
    eval "$(sed -n 's/^export \(ST_AUTH\|ST_USER\|ST_KEY\)=/\1=/p' "$work/swift/env")"
    sed "s|^storage = .*|storage = swift://bench|" "$work/settings.conf" >"$work/swift.conf"
    printf 'st_auth = %s\nst_user = %s\nst_key = %s\nswift_allow_http = yes\n' \
        "$ST_AUTH" "$ST_USER" "$ST_KEY" >>"$work/swift.conf"
    chmod 600 "$work/swift.conf"
    swiftclient() { swift -q -A "$ST_AUTH" -U "$ST_USER" -K "$ST_KEY" "$@"; }
    SWIFT=yes
fi

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

# seconds, peak RSS (KiB) and CPU seconds (user + system) of a command; its
# output goes to $2 (or nowhere)
measure() { # label outfile command...
    local label=$1 out=$2
    shift 2
    # Every run starts with no dirty pages: the files earlier runs wrote
    # would otherwise be written back during (and charged to) later ones.
    sync
    /usr/bin/time -f "%e %M %U %S" -o "$work/time" "$@" >"$out" 2>"$work/stderr" ||
        { echo "$label failed:" >&2; cat "$work/stderr" >&2; exit 1; }
    local user system
    read -r SECS RSS user system <"$work/time"
    CPU=$(echo "$user $system" | awk '{ printf "%.2f", $1 + $2 }')
}

median() { printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"; }
# MB/s to two decimals: the ratios are taken of these, the tables round them.
mbps() { echo "$1 $2" | awk '{ printf "%.2f", $1 / 1e6 / ($2 > 0 ? $2 : 0.001) }'; }
ratio() { echo "$1 $2" | awk '{ printf "%.2f", ($2 > 0 ? $1 / $2 : 0) }'; }

table=""
verdicts=""
row() { # name seconds rss stored_bytes reference_mbps
    local speed
    speed=$(mbps "$RAW" "$2")
    LAST_MBPS=$speed
    table+=$(printf '| %-44s | %8.0f | %6s | %6s MiB | %s |' "$1" "$speed" "$(ratio "$speed" "$5")" \
        "$(($3 / 1024))" "${4:+$(ratio "$4" "$GZIP6")}")$'\n'
}

# verdict "what" value op limit: one line of the targets list.
verdict() {
    local ok
    ok=$(echo "$2 $4" | awk -v op="$3" '{ print (op == ">=" ? $1 >= $2 : $1 <= $2) ? "met" : "NOT met" }')
    verdicts+="- $1: $2 (target $3 $4): **$ok**"$'\n'
}

# Redis's own outage for the data it has: stop, start, load (until PONG).
redis_restart() {
    sync
    local started
    started=$(now)
    systemctl stop "$unit"
    systemctl start "$unit"
    wait_ready
    since "$started"
}

# Redis's own BGSAVE of the data it has, until it reports the save done.
redis_bgsave() {
    sync
    local started
    started=$(now)
    redis-cli -p "$port" bgsave >/dev/null
    while redis-cli -p "$port" info persistence | grep -q '^rdb_bgsave_in_progress:1'; do
        sleep 0.02
    done
    redis-cli -p "$port" info persistence | grep -q '^rdb_last_bgsave_status:ok' ||
        { echo "Redis's own BGSAVE failed" >&2; exit 1; }
    since "$started"
}

# wait until the running server's AOF is enabled and its rewrite is done
wait_aof() {
    local p
    for _ in $(seq 6000); do
        p=$(redis-cli -p "$port" info persistence)
        if grep -q '^aof_enabled:1' <<<"$p" && grep -q '^aof_rewrite_in_progress:0' <<<"$p" &&
            grep -q '^aof_rewrite_scheduled:0' <<<"$p"; then
            return 0
        fi
        sleep 0.05
    done
    echo "Redis did not write its AOF" >&2
    exit 1
}

more=""
# sec_row what seconds [compared-with its-seconds]: a row of the table of
# whole runs, in seconds, with the ratio to what it is compared with.
sec_row() {
    more+="| $1 | $2 | ${3:-} | ${4:+$(ratio "$2" "$4")} |"$'\n'
}

# Beyond the decode: what a backup costs on top of Redis's own BGSAVE, the
# outage of a restore next to Redis's own restart (RDB, and AOF with our
# private rebuild), and Swift next to python-swiftclient moving the same
# stored bytes. The ratios of seconds the targets judge are in `verdicts`.
beyond_the_stream() { # name backup-secs stream-secs outage restart
    local name=$1 backup=$2 stream=$3 outage=$4 restart=$5 bgsave
    more+=$'\n'"#### $name: whole runs, in seconds"$'\n\n'
    more+="| run | seconds | compared with | ratio |"$'\n'"|---|---|---|---|"$'\n'
    bgsave=$(redis_bgsave)
    sec_row "Redis's own BGSAVE" "$bgsave"
    sec_row "backup, end to end (BGSAVE included)" "$backup" "Redis's own BGSAVE" "$bgsave"
    redis-cli -p "$port" config set repl-diskless-sync yes >/dev/null
    redis-cli -p "$port" config set repl-diskless-sync-delay 0 >/dev/null
    measure "backup --source replication" /dev/null "$BIN" -c "$work/settings.conf" backup --source replication --id "bench-$name-replication"
    sec_row "backup --source replication (diskless sync, delay 0), end to end" "$SECS" "Redis's own BGSAVE" "$bgsave"
    sec_row "Redis's own stop, start and load of the RDB †" "$restart"
    sec_row "restore's outage: stop, place, start, load †" "$outage" "Redis's own stop, start, load" "$restart"
    [ -z "$SWIFT" ] || swift_runs "$name" "$stream"
    [ "${BENCH_AOF:-yes}" = no ] || aof_runs "$name"
}

# CPU seconds the Swift all-in-one's servers (one process each) have used.
swift_cpu() {
    local f pid
    for f in "$work"/swift/run/*.pid; do
        read -r pid _ <"$f"
        cut -d' ' -f14,15 "/proc/$pid/stat" 2>/dev/null || echo "0 0"
    done | awk -v hz="$(getconf CLK_TCK)" '{ t += $1 + $2 } END { printf "%.2f", t / hz }'
}
cpu_since() { echo "$(swift_cpu) $1" | awk '{ printf "%.2f", $1 - $2 }'; }

# Three interleaved rounds: backup to Swift and python-swiftclient uploading
# the stored object (64 MiB segments, its default 10 threads); then verify
# from Swift and the client downloading it.
swift_runs() { # name local-stream-secs
    local name=$1 local_stream=$2 round stream_runs=() e2e_runs=() upload_runs=() verify_runs=() download_runs=()
    local our_cpu=() their_cpu=() client_cpu=() client_their_cpu=() before
    local object="$work/backups/bench-$name.rbk"
    local client=(swift -q -A "$ST_AUTH" -U "$ST_USER" -K "$ST_KEY")
    for round in 1 2 3; do
        before=$(swift_cpu)
        measure "backup to Swift" /dev/null "$BIN" -c "$work/swift.conf" backup --id "bench-$name-$round"
        their_cpu+=("$(cpu_since "$before")")
        our_cpu+=("$CPU")
        e2e_runs+=("$SECS")
        stream_runs+=("$(sed -n 's/.*stream: .* stored in \([0-9.]*\)s.*/\1/p' "$work/stderr")")
        before=$(swift_cpu)
        measure "swiftclient upload" /dev/null "${client[@]}" upload bench-reference "$object" \
            --object-name "$name-$round" --segment-size 67108864 --use-slo
        client_their_cpu+=("$(cpu_since "$before")")
        client_cpu+=("$CPU")
        upload_runs+=("$SECS")
        measure "verify from Swift" /dev/null "$BIN" -q -c "$work/swift.conf" verify "bench-$name-$round"
        verify_runs+=("$SECS")
        measure "swiftclient download" /dev/null "${client[@]}" download bench-reference "$name-$round" -o /dev/null
        download_runs+=("$SECS")
        "$BIN" -q -c "$work/swift.conf" delete "bench-$name-$round" >/dev/null
        "${client[@]}" delete bench-reference "$name-$round" >/dev/null
    done
    local stream upload verify download
    stream=$(median "${stream_runs[@]}")
    upload=$(median "${upload_runs[@]}")
    verify=$(median "${verify_runs[@]}")
    download=$(median "${download_runs[@]}")
    sec_row "python-swiftclient upload of the stored object ($(($(stat -c %s "$object") / 1048576)) MiB) †" "$upload"
    sec_row "backup to Swift, end to end †" "$(median "${e2e_runs[@]}")"
    sec_row "backup to Swift, stream only †" "$stream" "backup to the local directory, stream only" "$local_stream"
    sec_row "backup to Swift, stream only †" "$stream" "python-swiftclient upload" "$upload"
    sec_row "python-swiftclient download of the stored object †" "$download"
    sec_row "verify from Swift †" "$verify" "python-swiftclient download" "$download"
    # Both share this machine's cores with Swift's own servers: what each run
    # cost in CPU, ours (or the client's) and Swift's, shows who waits for whom.
    sec_row "CPU seconds of the backup to Swift (BGSAVE not included) †" "$(median "${our_cpu[@]}")"
    sec_row "CPU seconds of Swift's servers during it †" "$(median "${their_cpu[@]}")"
    sec_row "CPU seconds of python-swiftclient's upload †" "$(median "${client_cpu[@]}")"
    sec_row "CPU seconds of Swift's servers during that upload †" "$(median "${client_their_cpu[@]}")"
    verdict "backup to Swift / to a local directory (stream, seconds)" "$(ratio "$stream" "$local_stream")" "<=" 1.2
    verdict "backup to Swift / python-swiftclient upload (seconds)" "$(ratio "$stream" "$upload")" "<=" 1
    [ "$CORES" -lt 2 ] || swift_pinned_runs "$name"
}

# The stream time a backup logged (its INFO line), from the last `measure`.
stream_secs_logged() { sed -n 's/.*stream: .* stored in \([0-9.]*\)s.*/\1/p' "$work/stderr"; }

# Swift's servers (memcached too) and Redis (its BGSAVE child inherits it)
# onto the CPUs given.
pin_theirs() { # cpu-list
    local f pid
    for f in "$work"/swift/run/*.pid; do
        read -r pid _ <"$f"
        taskset -a -p -c "$1" "$pid" >/dev/null
    done
    pid=$(redis-cli -p "$port" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
    taskset -a -p -c "$1" "$pid" >/dev/null
}

# Where Swift runs on hosts of its own, its servers take none of our CPU.
# Here: our backup on one core, to a local directory and to Swift alike,
# with Swift's servers and Redis on another, three interleaved rounds. Not
# a target: it shows what the Swift path itself costs us.
swift_pinned_runs() { # name
    local name=$1 round local_runs=() swift_runs=()
    pin_theirs 1
    for round in 1 2 3; do
        measure "backup on one core" /dev/null taskset -c 0 "$BIN" -c "$work/settings.conf" \
            backup --id "bench-$name-one-core-$round"
        local_runs+=("$(stream_secs_logged)")
        rb delete "bench-$name-one-core-$round" >/dev/null
        measure "backup to Swift on one core" /dev/null taskset -c 0 "$BIN" -c "$work/swift.conf" \
            backup --id "bench-$name-one-core-$round"
        swift_runs+=("$(stream_secs_logged)")
        "$BIN" -q -c "$work/swift.conf" delete "bench-$name-one-core-$round" >/dev/null
    done
    pin_theirs "0-$((CORES - 1))"
    sec_row "backup to a local directory, stream only, on one core †" "$(median "${local_runs[@]}")"
    sec_row "backup to Swift, stream only, on one core, Swift's servers on another †" \
        "$(median "${swift_runs[@]}")" "the same to a local directory" "$(median "${local_runs[@]}")"
}

# The same backup restored into an instance with appendonly yes: the outage
# then includes our private AOF rebuild; Redis's own restart loads the AOF.
aof_runs() { # name
    local name=$1 outage rebuild restart
    redis-cli -p "$port" config set appendonly yes >/dev/null
    wait_aof
    sed -i 's/^appendonly no$/appendonly yes/' "$work/redis.conf"
    measure "restore with AOF" /dev/null "$BIN" -c "$work/settings.conf" restore "bench-$name"
    outage=$(sed -n 's/.*was out of service for \([0-9.]*\)s.*/\1/p' "$work/stderr")
    rebuild=$(sed -n 's/.*AOF rebuilt from the restored data in \([0-9.]*\)s.*/\1/p' "$work/stderr")
    restart=$(redis_restart)
    sec_row "Redis's own stop, start and load, appendonly yes" "$restart"
    sec_row "restore's outage, appendonly yes (the AOF rebuilt before the stop, in $rebuild s)" "$outage" "Redis's own, appendonly yes" "$restart"
    redis-cli -p "$port" config set appendonly no >/dev/null
    sed -i 's/^appendonly yes$/appendonly no/' "$work/redis.conf"
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
    local trove reverse pigz="" backup_mbps verify_mbps export_mbps staging_mbps max_rss=0

    measure "gzip -6" "$work/ref.gz" gzip -6 -c "$rdb"
    GZIP6=$(stat -c %s "$work/ref.gz")
    rm -f "$work/ref.gz"
    # Trove's pipeline and our backup in three interleaved rounds, each row
    # the median: one run of ours lasts a second or two, where this
    # machine's noise is a few percent either way (as for the decodes
    # below). The backup's own stream time (from the moment the dump
    # exists) is in its log line "stream: ... in N s"; the process's RSS is
    # the whole run. Rounds 2 and 3 back up under IDs of their own, deleted
    # after.
    local round trove_runs=() trove_rss=0 backup_runs=() stream_runs=() backup_rss=0 id
    for round in 1 2 3; do
        measure "trove" "$work/trove.enc" sh -c "gzip -6 -c '$rdb' | openssl enc -aes-256-cbc -pbkdf2 -pass pass:bench"
        trove_runs+=("$SECS")
        trove_rss=$((RSS > trove_rss ? RSS : trove_rss))
        id=bench-$name
        [ "$round" = 1 ] || id=bench-$name-round-$round
        measure "backup" "$work/id" "$BIN" -c "$work/settings.conf" backup --id "$id"
        backup_runs+=("$SECS")
        stream_runs+=("$(stream_secs_logged)")
        backup_rss=$((RSS > backup_rss ? RSS : backup_rss))
    done
    rb delete "bench-$name-round-2" >/dev/null
    rb delete "bench-$name-round-3" >/dev/null
    trove=$(mbps "$RAW" "$(median "${trove_runs[@]}")")
    row "Trove: gzip -6, openssl enc (backup) †" "$(median "${trove_runs[@]}")" "$trove_rss" "$(stat -c %s "$work/trove.enc")" "$trove"
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

    SECS_BACKUP=$(median "${backup_runs[@]}")
    local stream_secs stored
    stream_secs=$(median "${stream_runs[@]}")
    stored=$(stat -c %s "$work/backups/bench-$name.rbk")
    row "redis-backup backup (stream only) †" "$stream_secs" "$backup_rss" "$stored" "$trove"
    backup_mbps=$LAST_MBPS
    max_rss=$((backup_rss > max_rss ? backup_rss : max_rss))

    # The decodes take a second or three, short next to this machine's
    # noise: three interleaved rounds of Trove's reverse, verify and export,
    # and each row takes its median time (and its highest RSS).
    local reverse_runs=() verify_runs=() export_runs=() reverse_rss=0 verify_rss=0 export_rss=0
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
    verify_mbps=$LAST_MBPS
    row "redis-backup export ‡" "$(median "${export_runs[@]}")" "$export_rss" "" "$reverse"
    export_mbps=$LAST_MBPS
    max_rss=$((max_rss > verify_rss ? max_rss : verify_rss))
    max_rss=$((max_rss > export_rss ? max_rss : export_rss))
    # As for the backup, the restore's own part is in its log: "staged and
    # verified ... in N s" covers reading, checking and writing the RDB
    # before Redis is touched; the whole run adds Redis's stop, start and load.
    # Its outage (from `systemctl stop` until the restored data is loaded)
    # is logged too, and set beside Redis's own stop, start and load of the
    # same RDB, interleaved the same way.
    local restore_runs=() staging_runs=() outage_runs=() restart_runs=() restore_rss=0
    for round in 1 2 3; do
        measure "restore" /dev/null "$BIN" -c "$work/settings.conf" restore "bench-$name"
        restore_runs+=("$SECS")
        staging_runs+=("$(sed -n 's/.*staged and verified .* in \([0-9.]*\)s.*/\1/p' "$work/stderr")")
        outage_runs+=("$(sed -n 's/.*was out of service for \([0-9.]*\)s.*/\1/p' "$work/stderr")")
        restore_rss=$((RSS > restore_rss ? RSS : restore_rss))
        restart_runs+=("$(redis_restart)")
    done
    row "redis-backup restore (incl. stop/start/load) ‡" "$(median "${restore_runs[@]}")" "$restore_rss" "" "$reverse"
    row "redis-backup restore (staging only) ‡" "$(median "${staging_runs[@]}")" "$restore_rss" "" "$reverse"
    staging_mbps=$LAST_MBPS
    max_rss=$((restore_rss > max_rss ? restore_rss : max_rss))
    local outage restart
    outage=$(median "${outage_runs[@]}")
    restart=$(median "${restart_runs[@]}")

    verdicts+=$'\n'"$name:"$'\n'
    # The speed targets are set on a ~300 MB RDB; a 10 MB one is there to show
    # memory does not grow, and is over in a few hundredths of a second.
    if [ "$RAW" -ge 200000000 ]; then
        verdict "backup × Trove" "$(ratio "$backup_mbps" "$trove")" ">=" 8
        verdict "verify × Trove's reverse" "$(ratio "$verify_mbps" "$reverse")" ">=" 4
        verdict "export × Trove's reverse" "$(ratio "$export_mbps" "$reverse")" ">=" 4
        verdict "restore, staging only, × Trove's reverse" "$(ratio "$staging_mbps" "$reverse")" ">=" 3
        verdict "restore's outage / Redis's own stop, start and load" "$(ratio "$outage" "$restart")" "<=" 1.2
        [ -n "$pigz" ] && verdict "backup × pigz -1" "$(ratio "$backup_mbps" "$pigz")" ">=" 1
        beyond_the_stream "$name" "$SECS_BACKUP" "$stream_secs" "$outage" "$restart"
    else
        verdicts+="- speed: not judged on an RDB under 200 MB (too short to time)"$'\n'
    fi
    verdict "stored / gzip -6" "$(ratio "$stored" "$GZIP6")" "<=" 1.2
    verdict "peak RSS of backup, verify, export, restore (MiB)" "$((max_rss / 1024))" "<=" 32
    table+=$more
    more=""
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
into a file). The reverse, verify, export and restore rows, and the rows
marked †, are the median of three interleaved rounds. Binary: $binary bytes
(stripped, TLS included).

Targets (issues 6 and 18), judged in this run:
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
