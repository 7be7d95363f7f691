//! The systemd `sd_notify` datagram format: newline-separated `KEY=VALUE` lines.
//!
//! Each line is a field on its own, as systemd reads them: unknown keys are skipped, and a
//! *malformed* field is ignored and counted while the other fields of the same datagram are
//! still honoured. A line is malformed when it is not UTF-8, contains a NUL byte, has no
//! `=` or an empty key, gives a known numeric key (`ERRNO`, `MAINPID`,
//! `EXTEND_TIMEOUT_USEC`, `WATCHDOG_USEC`) a value that is not a number in range, or gives
//! `WATCHDOG` a value other than `1` or `trigger`. Empty lines are skipped.

use std::fmt;
use std::time::Duration;

/// The key a child-hosted runtime sends once its setup succeeded.
pub const STARTED_KEY: &str = "X_PODVISOR_STARTED";

/// The fields of one datagram that podvisor acts on, and how many lines were malformed.
///
/// # Examples
///
/// ```
/// use podvisor::core::notify;
/// use std::time::Duration;
///
/// let m = notify::parse(b"READY=1\nSTATUS=listening on :80\nEXTEND_TIMEOUT_USEC=5000000\n");
/// assert!(m.ready);
/// assert_eq!(m.status, Some("listening on :80"));
/// assert_eq!(m.extend_timeout, Some(Duration::from_secs(5)));
/// assert_eq!(m.malformed, 0);
///
/// // One odd field does not drop the others.
/// let m = notify::parse(b"READY=1\nSTATUS=\xff\xfe\nno equals sign\nMAINPID=-5");
/// assert!(m.ready);
/// assert_eq!((m.status, m.main_pid), (None, None));
/// assert_eq!(m.malformed, 3);
/// assert_eq!(m.first_error, Some(notify::NotifyError::NotUtf8 { line: 2 }));
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
    /// `STATUS=…` (the last valid one, if repeated).
    pub status: Option<&'a str>,
    /// `ERRNO=…`.
    pub errno: Option<i32>,
    /// `MAINPID=…`.
    pub main_pid: Option<u32>,
    /// `EXTEND_TIMEOUT_USEC=…`.
    pub extend_timeout: Option<Duration>,
    /// `WATCHDOG=1`: the watchdog ping.
    pub watchdog: bool,
    /// `WATCHDOG=trigger`: the pod asks to be taken for hung at once.
    pub watchdog_trigger: bool,
    /// `WATCHDOG_USEC=…`: a new watchdog interval (zero turns the watchdog off).
    pub watchdog_interval: Option<Duration>,
    /// How many lines were malformed (and ignored).
    pub malformed: u32,
    /// Why the first malformed line was, if any was.
    pub first_error: Option<NotifyError>,
}

/// Why one line of a datagram was ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyError {
    /// Line `line` (1-based) is not valid UTF-8.
    NotUtf8 {
        /// 1-based line number.
        line: usize,
    },
    /// Line `line` (1-based) contains a NUL byte.
    Nul {
        /// 1-based line number.
        line: usize,
    },
    /// Line `line` (1-based) is not `KEY=VALUE`.
    NotKeyValue {
        /// 1-based line number.
        line: usize,
    },
    /// A numeric key has a value that is not a number in range.
    BadNumber {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// `WATCHDOG=` with a value other than `1` or `trigger`.
    BadWatchdog {
        /// 1-based line number.
        line: usize,
    },
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::NotUtf8 { line } => write!(f, "notify datagram line {line} is not UTF-8"),
            NotifyError::Nul { line } => {
                write!(f, "notify datagram line {line} contains a NUL byte")
            }
            NotifyError::NotKeyValue { line } => {
                write!(f, "notify datagram line {line} is not KEY=VALUE")
            }
            NotifyError::BadNumber { line, key } => {
                write!(
                    f,
                    "notify datagram line {line}: key {key} has a value that is not a number in range"
                )
            }
            NotifyError::BadWatchdog { line } => write!(
                f,
                "notify datagram line {line}: WATCHDOG= expects 1 or trigger"
            ),
        }
    }
}

impl std::error::Error for NotifyError {}

/// Parses one datagram: every valid field is taken, every malformed line is counted in
/// [`NotifyMessage::malformed`] and otherwise ignored. Never fails.
pub fn parse(datagram: &[u8]) -> NotifyMessage<'_> {
    let mut message = NotifyMessage::default();
    for (index, line) in datagram.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Err(error) = field(&mut message, line, index + 1) {
            message.malformed = message.malformed.saturating_add(1);
            message.first_error.get_or_insert(error);
        }
    }
    message
}

/// Takes one non-empty line into `message`, or says why it is malformed (then `message`
/// is unchanged).
fn field<'a>(
    message: &mut NotifyMessage<'a>,
    line: &'a [u8],
    number: usize,
) -> Result<(), NotifyError> {
    if line.contains(&0) {
        return Err(NotifyError::Nul { line: number });
    }
    let text = std::str::from_utf8(line).map_err(|_| NotifyError::NotUtf8 { line: number })?;
    let (key, value) = text
        .split_once('=')
        .filter(|(key, _)| !key.is_empty())
        .ok_or(NotifyError::NotKeyValue { line: number })?;
    let bad = |key| NotifyError::BadNumber { line: number, key };
    match key {
        "READY" => message.ready |= value == "1",
        "STOPPING" => message.stopping |= value == "1",
        "BARRIER" => message.barrier |= value == "1",
        STARTED_KEY => message.started |= value == "1",
        "STATUS" => message.status = Some(value),
        "ERRNO" => message.errno = Some(value.parse().map_err(|_| bad("ERRNO"))?),
        "MAINPID" => message.main_pid = Some(value.parse().map_err(|_| bad("MAINPID"))?),
        "EXTEND_TIMEOUT_USEC" => {
            let usec: u64 = value.parse().map_err(|_| bad("EXTEND_TIMEOUT_USEC"))?;
            message.extend_timeout = Some(Duration::from_micros(usec));
        }
        "WATCHDOG" => match value {
            "1" => message.watchdog = true,
            "trigger" => message.watchdog_trigger = true,
            _ => return Err(NotifyError::BadWatchdog { line: number }),
        },
        "WATCHDOG_USEC" => {
            let usec: u64 = value.parse().map_err(|_| bad("WATCHDOG_USEC"))?;
            message.watchdog_interval = Some(Duration::from_micros(usec));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_known_key() {
        let m = parse(
            b"READY=1\nSTOPPING=1\nX_PODVISOR_STARTED=1\nBARRIER=1\nSTATUS=a=b\nERRNO=2\nMAINPID=42\nEXTEND_TIMEOUT_USEC=7\nOTHER=x",
        );
        assert!(m.ready && m.stopping && m.started && m.barrier);
        assert_eq!(m.status, Some("a=b"));
        assert_eq!(m.errno, Some(2));
        assert_eq!(m.main_pid, Some(42));
        assert_eq!(m.extend_timeout, Some(Duration::from_micros(7)));
        assert_eq!((m.malformed, m.first_error), (0, None));
    }

    #[test]
    fn watchdog_fields() {
        let m = parse(b"WATCHDOG=1\nWATCHDOG_USEC=2000000");
        assert!(m.watchdog && !m.watchdog_trigger);
        assert_eq!(m.watchdog_interval, Some(Duration::from_secs(2)));
        assert!(parse(b"WATCHDOG=trigger").watchdog_trigger);
        let m = parse(b"WATCHDOG=2\nWATCHDOG_USEC=-1\nREADY=1");
        assert!(!m.watchdog && !m.watchdog_trigger && m.ready);
        assert_eq!(m.watchdog_interval, None);
        assert_eq!(m.malformed, 2);
        assert_eq!(m.first_error, Some(NotifyError::BadWatchdog { line: 1 }));
        assert!(NotifyError::BadWatchdog { line: 1 }
            .to_string()
            .contains("expects 1 or trigger"));
    }

    #[test]
    fn ready_needs_exactly_one() {
        assert!(!parse(b"READY=0").ready);
        assert!(!parse(b"READY=yes").ready);
        assert_eq!(parse(b""), NotifyMessage::default());
        assert_eq!(parse(b"\n\n"), NotifyMessage::default());
    }

    #[test]
    fn malformed_lines_are_counted_and_the_rest_honoured() {
        let m = parse(b"READY=1\nSTATUS=\xff\xfe odd\nno equals sign\nMAINPID=-5\n");
        assert!(m.ready);
        assert_eq!(m.status, None);
        assert_eq!(m.main_pid, None);
        assert_eq!(m.malformed, 3);
        assert_eq!(m.first_error, Some(NotifyError::NotUtf8 { line: 2 }));

        let m = parse(b"STATUS=good\nSTATUS=bad\0\nREADY=1\0\nERRNO=x\nEXTEND_TIMEOUT_USEC=soon");
        assert!(!m.ready);
        assert_eq!(m.status, Some("good"));
        assert_eq!((m.errno, m.extend_timeout), (None, None));
        assert_eq!(m.malformed, 4);
        assert_eq!(m.first_error, Some(NotifyError::Nul { line: 2 }));
    }

    #[test]
    fn each_kind_of_malformed_line() {
        let first = |d: &[u8]| parse(d).first_error;
        assert_eq!(
            first(b"READY=1\nnonsense"),
            Some(NotifyError::NotKeyValue { line: 2 })
        );
        assert_eq!(first(b"=1"), Some(NotifyError::NotKeyValue { line: 1 }));
        assert_eq!(first(b"READY=1\0"), Some(NotifyError::Nul { line: 1 }));
        assert_eq!(first(&[0xff, b'=']), Some(NotifyError::NotUtf8 { line: 1 }));
        assert_eq!(
            first(b"MAINPID=-1"),
            Some(NotifyError::BadNumber {
                line: 1,
                key: "MAINPID"
            })
        );
        assert_eq!(
            first(b"\nEXTEND_TIMEOUT_USEC=soon"),
            Some(NotifyError::BadNumber {
                line: 2,
                key: "EXTEND_TIMEOUT_USEC"
            })
        );
        assert_eq!(
            first(b"ERRNO=x"),
            Some(NotifyError::BadNumber {
                line: 1,
                key: "ERRNO"
            })
        );
        assert!(NotifyError::NotKeyValue { line: 2 }
            .to_string()
            .contains("line 2"));
    }
}
