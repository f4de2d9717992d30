//! Redis (and Valkey) as this tool talks to it and reads it: RESP with caps
//! (`resp`), one blocking connection with deadlines, AUTH, renamed commands
//! and the BGSAVE procedure (`connection`), a replica's sync stream
//! (`replication`), when the kernel received what a read took (`arrival`),
//! redis.conf as Redis reads it (`conf`), the instance on
//! this host that settings and redis.conf describe together (`instance`),
//! the server binary and what it can load (`server`), connecting to a
//! Unix socket as root (`unix_socket`), whose socket took a connection
//! to a port of this host (`tcp_owner`), and the server's programs started
//! under another account (`as_account`).
//! Files on disk are not its business.

mod arrival;
pub mod as_account;
pub mod conf;
mod connection;
pub mod instance;
pub mod replication;
pub mod resp;
pub mod server;
pub mod server_log;
pub mod tcp_owner;
mod unix_socket;

pub use connection::*;
