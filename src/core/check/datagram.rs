//! The checker's own reading of notify datagrams, written out apart from the machine's
//! parser so that the two can be compared.

use std::time::Duration;

/// What the model takes from one notify datagram.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ModelDatagram {
    pub(crate) ready: bool,
    pub(crate) started: bool,
    pub(crate) stopping: bool,
    pub(crate) barrier: bool,
    pub(crate) status: Option<String>,
    pub(crate) errno: Option<i32>,
    pub(crate) main_pid: Option<u32>,
    pub(crate) extend: Option<Duration>,
    pub(crate) ping: bool,
    pub(crate) trigger: bool,
    pub(crate) watchdog_usec: Option<Duration>,
    pub(crate) malformed: u64,
}

/// The design's rule for notify datagrams (DESIGN §4 and §6), written out apart from the
/// machine's parser: the datagram is cut at every `\n`; an empty piece is nothing; a piece
/// is one field `KEY=VALUE`, split at its first `=`, with a non-empty key, no NUL byte and
/// valid UTF-8, whose value is a number where the key is `ERRNO` (i32), `MAINPID` (u32) or
/// `EXTEND_TIMEOUT_USEC` or `WATCHDOG_USEC` (u64, microseconds), and `1` or `trigger` where
/// the key is `WATCHDOG`. Any other piece is malformed: counted, and
/// without effect. Flags are set by the value `1` only; the last valid `STATUS=` wins.
pub(crate) fn model_datagram(datagram: &[u8]) -> ModelDatagram {
    let mut model = ModelDatagram::default();
    let mut rest = datagram;
    while !rest.is_empty() {
        let (piece, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        rest = after;
        if piece.is_empty() {
            continue;
        }
        let Some(eq) = piece.iter().position(|&b| b == b'=') else {
            model.malformed += 1;
            continue;
        };
        if eq == 0 || piece.contains(&0) {
            model.malformed += 1;
            continue;
        }
        let (Ok(key), Ok(value)) = (
            String::from_utf8(piece[..eq].to_vec()),
            String::from_utf8(piece[eq + 1..].to_vec()),
        ) else {
            model.malformed += 1;
            continue;
        };
        let valid = match key.as_str() {
            "READY" => {
                model.ready = model.ready || value == "1";
                true
            }
            "X_PODVISOR_STARTED" => {
                model.started = model.started || value == "1";
                true
            }
            "STOPPING" => {
                model.stopping = model.stopping || value == "1";
                true
            }
            "BARRIER" => {
                model.barrier = model.barrier || value == "1";
                true
            }
            "STATUS" => {
                model.status = Some(value);
                true
            }
            "ERRNO" => value.parse::<i32>().map(|n| model.errno = Some(n)).is_ok(),
            "MAINPID" => value
                .parse::<u32>()
                .map(|n| model.main_pid = Some(n))
                .is_ok(),
            "EXTEND_TIMEOUT_USEC" => value
                .parse::<u64>()
                .map(|n| model.extend = Some(Duration::from_micros(n)))
                .is_ok(),
            "WATCHDOG" if value == "1" => {
                model.ping = true;
                true
            }
            "WATCHDOG" if value == "trigger" => {
                model.trigger = true;
                true
            }
            "WATCHDOG" => false,
            "WATCHDOG_USEC" => value
                .parse::<u64>()
                .map(|n| model.watchdog_usec = Some(Duration::from_micros(n)))
                .is_ok(),
            _ => true,
        };
        if !valid {
            model.malformed += 1;
        }
    }
    model
}

/// The first 4096 bytes of `status`, cut back to a character boundary.
pub(super) fn cut_status(status: &str) -> &str {
    let mut end = 0;
    for (i, c) in status.char_indices() {
        if i + c.len_utf8() > 4096 {
            break;
        }
        end = i + c.len_utf8();
    }
    &status[..end]
}
