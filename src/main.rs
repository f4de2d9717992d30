//! redis-backup: back up and restore Redis. `main` only parses, dispatches and
//! maps the one `Error` type to the exit codes of CONTRACT.md.
#![forbid(unsafe_code)]

mod error;
mod secret;

fn main() {}
