# redis-backup — the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need (as root, on Debian) before they run.

CARGO ?= cargo
BIN   := target/release/redis-backup

.PHONY: build test demo check bench deps test-deps

build:
	$(CARGO) build --release

# redis-server (and redis-cli, redis-check-rdb) from Debian, if missing.
deps:
	@command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || { \
	  echo "installing redis-server with apt-get"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; }

# The tests also start a real OpenStack Swift (and Keystone) all-in-one
# (tests/support/swift-aio.sh), from Debian's packages.
test-deps: deps
	@command -v swift-proxy-server >/dev/null 2>&1 && command -v memcached >/dev/null 2>&1 \
	  && command -v keystone-manage >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 \
	  && command -v openssl >/dev/null 2>&1 || { \
	  echo "installing Swift, Keystone and memcached with apt-get"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    swift swift-proxy swift-account swift-container swift-object memcached curl openssl \
	    keystone python3-keystonemiddleware; }

test: test-deps
	$(CARGO) test --all-targets

# End to end on local-directory storage: a throwaway redis-server, data, backup,
# verify, export, and proof that the exported RDB is the one Redis wrote.
demo: deps build
	BIN=$(BIN) bash tests/demo.sh

check: test-deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets

# Speed and memory as ratios against reference runs in the same invocation.
bench: deps build
	@test -x /usr/bin/time && command -v pigz >/dev/null 2>&1 && command -v zstd >/dev/null 2>&1 \
	  && command -v openssl >/dev/null 2>&1 || { \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q time pigz zstd openssl; }
	BIN=$(BIN) bash tests/bench.sh
