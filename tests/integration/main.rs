//! Integration tests of `redis-backup`: each test drives the real binary
//! (`CARGO_BIN_EXE_redis-backup`) against a real `redis-server` of its own,
//! started and stopped through the `systemctl` stand-in in `tests/support`,
//! in its own scratch directory and on its own port.
//!
//! Run with `cargo test --test integration` (needs `redis-server` on PATH).

mod attacker;
mod fake_swift;
mod harness;

mod architecture;
mod attacker_selftest;
mod backup;
mod commands;
mod conformance;
mod connection;
mod deadlines;
mod faults;
mod harness_selftest;
mod hostile_storage;
mod identity;
mod install;
mod integrity;
mod keys;
mod least_privilege;
mod pitr;
mod replication;
mod restore;
mod restore_faults;
mod servers;
mod swift;
mod swift_auth;
mod swift_faults;
