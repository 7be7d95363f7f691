//! The systemd `sd_notify` datagram format: newline-separated `KEY=VALUE` lines.
//!
//! Unknown keys are skipped, as systemd does. A datagram is *malformed* — and then ignored
//! as a whole — when it is not UTF-8, contains a NUL byte, has a non-empty line without
//! `=` or with an empty key, or gives a known numeric key a value that is not a number.

use std::fmt;
use std::time::Duration;

/// The key a child-hosted runtime sends once its setup succeeded.
pub const STARTED_KEY: &str = "X_PODVISOR_STARTED";

/// The fields of one datagram that podvisor acts on.
///
/// # Examples
///
/// ```
/// use podvisor::core::notify;
/// use std::time::Duration;
///
/// let m = notify::parse(b"READY=1\nSTATUS=listening on :80\nEXTEND_TIMEOUT_USEC=5000000\n").unwrap();
/// assert!(m.ready);
/// assert_eq!(m.status, Some("listening on :80"));
/// assert_eq!(m.extend_timeout, Some(Duration::from_secs(5)));
/// assert!(notify::parse(b"READY").is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotifyMessage<'a> {
    /// `READY=1`.
    pub ready: bool,
    /// `STOPPING=1`.
    pub stopping: bool,
    /// `X_PODVISOR_STARTED=1`.
    pub started: bool,
    /// `BARRIER=1` (the sender waits until the file descriptor it passed is closed).
    pub barrier: bool,
    /// `STATUS=…` (the last one, if repeated).
    pub status: Option<&'a str>,
    /// `ERRNO=…`.
    pub errno: Option<i32>,
    /// `MAINPID=…`.
    pub main_pid: Option<u32>,
    /// `EXTEND_TIMEOUT_USEC=…`.
    pub extend_timeout: Option<Duration>,
}

/// Why a datagram was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyError {
    /// The datagram is not valid UTF-8.
    NotUtf8,
    /// The datagram contains a NUL byte.
    Nul,
    /// Line `line` (1-based) is not `KEY=VALUE`.
    NotKeyValue {
        /// 1-based line number.
        line: usize,
    },
    /// A numeric key has a value that is not a number in range.
    BadNumber {
        /// The key.
        key: &'static str,
    },
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::NotUtf8 => write!(f, "notify datagram is not UTF-8"),
            NotifyError::Nul => write!(f, "notify datagram contains a NUL byte"),
            NotifyError::NotKeyValue { line } => {
                write!(f, "notify datagram line {line} is not KEY=VALUE")
            }
            NotifyError::BadNumber { key } => {
                write!(
                    f,
                    "notify datagram key {key} has a value that is not a number in range"
                )
            }
        }
    }
}

impl std::error::Error for NotifyError {}

/// Parses one datagram.
pub fn parse(datagram: &[u8]) -> Result<NotifyMessage<'_>, NotifyError> {
    if datagram.contains(&0) {
        return Err(NotifyError::Nul);
    }
    let text = std::str::from_utf8(datagram).map_err(|_| NotifyError::NotUtf8)?;
    let mut message = NotifyMessage::default();
    for (index, line) in text.split('\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(NotifyError::NotKeyValue { line: index + 1 });
        };
        if key.is_empty() {
            return Err(NotifyError::NotKeyValue { line: index + 1 });
        }
        match key {
            "READY" => message.ready |= value == "1",
            "STOPPING" => message.stopping |= value == "1",
            "BARRIER" => message.barrier |= value == "1",
            STARTED_KEY => message.started |= value == "1",
            "STATUS" => message.status = Some(value),
            "ERRNO" => message.errno = Some(number(value, "ERRNO")?),
            "MAINPID" => message.main_pid = Some(number(value, "MAINPID")?),
            "EXTEND_TIMEOUT_USEC" => {
                let usec: u64 = number(value, "EXTEND_TIMEOUT_USEC")?;
                message.extend_timeout = Some(Duration::from_micros(usec));
            }
            _ => {}
        }
    }
    Ok(message)
}

fn number<T: std::str::FromStr>(value: &str, key: &'static str) -> Result<T, NotifyError> {
    value.parse().map_err(|_| NotifyError::BadNumber { key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_known_key() {
        let m = parse(
            b"READY=1\nSTOPPING=1\nX_PODVISOR_STARTED=1\nBARRIER=1\nSTATUS=a=b\nERRNO=2\nMAINPID=42\nEXTEND_TIMEOUT_USEC=7\nOTHER=x",
        )
        .unwrap();
        assert!(m.ready && m.stopping && m.started && m.barrier);
        assert_eq!(m.status, Some("a=b"));
        assert_eq!(m.errno, Some(2));
        assert_eq!(m.main_pid, Some(42));
        assert_eq!(m.extend_timeout, Some(Duration::from_micros(7)));
    }

    #[test]
    fn ready_needs_exactly_one() {
        assert!(!parse(b"READY=0").unwrap().ready);
        assert!(!parse(b"READY=yes").unwrap().ready);
        assert_eq!(parse(b"").unwrap(), NotifyMessage::default());
    }

    #[test]
    fn rejects_malformed_datagrams() {
        assert_eq!(
            parse(b"READY=1\nnonsense"),
            Err(NotifyError::NotKeyValue { line: 2 })
        );
        assert_eq!(parse(b"=1"), Err(NotifyError::NotKeyValue { line: 1 }));
        assert_eq!(parse(b"READY=1\0"), Err(NotifyError::Nul));
        assert_eq!(parse(&[0xff, b'=']), Err(NotifyError::NotUtf8));
        assert_eq!(
            parse(b"MAINPID=-1"),
            Err(NotifyError::BadNumber { key: "MAINPID" })
        );
        assert_eq!(
            parse(b"EXTEND_TIMEOUT_USEC=soon"),
            Err(NotifyError::BadNumber {
                key: "EXTEND_TIMEOUT_USEC"
            })
        );
        assert_eq!(
            parse(b"ERRNO=x"),
            Err(NotifyError::BadNumber { key: "ERRNO" })
        );
        assert!(NotifyError::NotKeyValue { line: 2 }
            .to_string()
            .contains("line 2"));
    }
}
