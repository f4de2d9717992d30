//! The one error type of the tool. Each kind maps to exactly one exit status of
//! CONTRACT.md, so the place that knows *what* failed also decides *how* the
//! process ends; `main` only prints the message and returns the code.

use std::fmt;

/// What went wrong, with a message that names the failing thing and what to do.
#[derive(Debug)]
pub enum Error {
    /// Usage or settings error; nothing was touched (exit 2).
    Usage(String),
    /// Redis could not be reached or refused a command (exit 3).
    Redis(String),
    /// Storage error: network, auth, missing object, full disk (exit 4).
    Storage(String),
    /// Storage error that trying again cannot mend: credentials rejected,
    /// a certificate not trusted (exit 4, like `Storage`).
    StorageRefused(String),
    /// Storage error: the backup or object asked for is not there (exit 4).
    Missing(String),
    /// Integrity error: wrong key, tampered or truncated backup, bad RDB (exit 5).
    Integrity(String),
    /// Restore failed; the previous data was put back and Redis restarted (exit 6).
    RolledBack(String),
    /// Restore failed and the previous data could not be put back (exit 7).
    RollbackFailed(String),
    /// Anything else (exit 1).
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Other(_) => 1,
            Error::Usage(_) => 2,
            Error::Redis(_) => 3,
            Error::Storage(_) | Error::StorageRefused(_) | Error::Missing(_) => 4,
            Error::Integrity(_) => 5,
            Error::RolledBack(_) => 6,
            Error::RollbackFailed(_) => 7,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Error::Usage(m)
            | Error::Redis(m)
            | Error::Storage(m)
            | Error::StorageRefused(m)
            | Error::Missing(m)
            | Error::Integrity(m)
            | Error::RolledBack(m)
            | Error::RollbackFailed(m)
            | Error::Other(m) => m,
        }
    }

    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }

    pub fn redis(msg: impl Into<String>) -> Error {
        Error::Redis(msg.into())
    }

    pub fn storage(msg: impl Into<String>) -> Error {
        Error::Storage(msg.into())
    }

    pub fn storage_refused(msg: impl Into<String>) -> Error {
        Error::StorageRefused(msg.into())
    }

    /// Whether sending the same request again might succeed.
    pub fn worth_retrying(&self) -> bool {
        !matches!(self, Error::StorageRefused(_))
    }

    pub fn integrity(msg: impl Into<String>) -> Error {
        Error::Integrity(msg.into())
    }

    pub fn other(msg: impl Into<String>) -> Error {
        Error::Other(msg.into())
    }

    /// Same kind, with `context` put in front of the message ("reading X: ...").
    pub fn context(self, context: impl fmt::Display) -> Error {
        let wrap = |m: String| format!("{context}: {m}");
        match self {
            Error::Usage(m) => Error::Usage(wrap(m)),
            Error::Redis(m) => Error::Redis(wrap(m)),
            Error::Storage(m) => Error::Storage(wrap(m)),
            Error::StorageRefused(m) => Error::StorageRefused(wrap(m)),
            Error::Missing(m) => Error::Missing(wrap(m)),
            Error::Integrity(m) => Error::Integrity(wrap(m)),
            Error::RolledBack(m) => Error::RolledBack(wrap(m)),
            Error::RollbackFailed(m) => Error::RollbackFailed(wrap(m)),
            Error::Other(m) => Error::Other(wrap(m)),
        }
    }
}

impl From<Error> for std::io::Error {
    /// For a `Read` or `Write` that knows better than "I/O error" what went
    /// wrong (Redis too slow, an RDB too long): the kind survives the trip
    /// through `io::Error`, and `Error::from_io` takes it out again.
    fn from(e: Error) -> std::io::Error {
        std::io::Error::other(e)
    }
}

impl Error {
    /// The `Error` that `e` carries (see `From<Error> for io::Error`), or
    /// `e` itself when it carries none.
    pub fn from_io(e: std::io::Error) -> std::result::Result<Error, std::io::Error> {
        if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Err(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(err)) => Ok(*err),
            Some(Err(inner)) => Err(std::io::Error::new(kind, inner)),
            None => Err(std::io::Error::from(kind)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_contract_exit_code() {
        let cases = [
            (Error::Other("x".into()), 1),
            (Error::usage("x"), 2),
            (Error::redis("x"), 3),
            (Error::storage("x"), 4),
            (Error::storage_refused("x"), 4),
            (Error::integrity("x"), 5),
            (Error::RolledBack("x".into()), 6),
            (Error::RollbackFailed("x".into()), 7),
        ];
        for (err, code) in cases {
            assert_eq!(err.exit_code(), code, "{err:?}");
        }
    }

    #[test]
    fn an_error_survives_a_trip_through_io_error() {
        let io: std::io::Error = Error::redis("too slow").into();
        let back = Error::from_io(io).unwrap();
        assert_eq!((back.exit_code(), back.message()), (3, "too slow"));
        let carried = std::io::Error::new(std::io::ErrorKind::TimedOut, Error::storage("full"));
        assert_eq!(Error::from_io(carried).unwrap().exit_code(), 4);
        let plain = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed");
        let plain = Error::from_io(plain).unwrap_err();
        assert_eq!(plain.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(plain.to_string(), "closed");
    }

    #[test]
    fn context_keeps_the_kind() {
        let err = Error::storage("disk full").context("writing backup b1");
        assert_eq!(err.exit_code(), 4);
        assert_eq!(err.message(), "writing backup b1: disk full");
        let refused = Error::storage_refused("bad key").context("log-in");
        assert!(!refused.worth_retrying());
        assert!(Error::storage("timed out").worth_retrying());
    }
}
