//! How the `sql` adapter's database errors count for delivery: which are
//! worth a retry, which are the app refusing the value, which mean the
//! account is gone.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::super::{AdapterError, ErrorKind};

/// The error class of a failed statement.
pub(super) fn classify(e: &DieselError) -> AdapterError {
    let (kind, msg) = match e {
        DieselError::DatabaseError(kind, info) => {
            let msg = info.message().to_string();
            let kind = match kind {
                DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation => ErrorKind::Rejected,
                DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection => {
                    ErrorKind::Transient
                }
                _ => kind_of_message(&msg),
            };
            (kind, msg)
        }
        DieselError::NotFound => (ErrorKind::NotFound, e.to_string()),
        DieselError::DeserializationError(_) | DieselError::SerializationError(_) => {
            (ErrorKind::Rejected, e.to_string())
        }
        other => (ErrorKind::Transient, other.to_string()),
    };
    AdapterError {
        kind,
        status: None,
        message: format!("sql: {msg}"),
    }
}

/// Classifies a database message that carries no error code diesel knows.
pub(super) fn kind_of_message(msg: &str) -> ErrorKind {
    let m = msg.to_ascii_lowercase();
    const AUTH: &[&str] = &[
        "permission denied",
        "password authentication failed",
        "no pg_hba.conf entry",
        "authentication",
        "readonly database",
        "read-only",
    ];
    const TRANSIENT: &[&str] = &[
        "deadlock",
        "could not serialize",
        "locked",
        "busy",
        "timeout",
        "canceling statement",
        "disk",
        "full",
        "i/o",
        "connection",
        "connect",
        "terminating",
        "shutting down",
        "starting up",
        "recovery",
        "too many",
        "out of memory",
        "lock",
    ];
    if AUTH.iter().any(|a| m.contains(a)) {
        ErrorKind::Unauthorized
    } else if TRANSIENT.iter().any(|t| m.contains(t)) {
        ErrorKind::Transient
    } else {
        ErrorKind::Rejected
    }
}

pub(super) fn pool_error(e: &r2d2::Error) -> AdapterError {
    let msg = e.to_string();
    let kind = match kind_of_message(&msg) {
        ErrorKind::Unauthorized => ErrorKind::Unauthorized,
        _ => ErrorKind::Transient,
    };
    AdapterError {
        kind,
        status: None,
        message: format!("sql: no connection to the app's database: {msg}"),
    }
}

pub(super) fn groups_unsupported() -> AdapterError {
    AdapterError::rejected("groups are not supported by this sql app")
}
