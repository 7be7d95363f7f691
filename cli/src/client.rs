//! The commands that talk to a running `podvisor up` over its control socket: `ps`,
//! `logs`, `events`, `down`, `stop`, `start`, `restart`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::control::{self, VERSION};
use crate::json::{self, Value};
use crate::report::quote;

/// The deployment answered with an error (unknown member, permission denied, a request
/// it does not support), or its socket may not be opened by this user.
pub const REFUSED: i32 = 1;
/// No deployment answers: no control socket, a stale one, or no answer in time.
pub const UNREACHABLE: i32 = 3;

/// How long to wait for an answer to a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Which command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Ps,
    Logs,
    Events,
    Down,
    Stop,
    Start,
    Restart,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Ps => "ps",
            Action::Logs => "logs",
            Action::Events => "events",
            Action::Down => "down",
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Restart => "restart",
        }
    }
}

/// A client command and its options.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientOptions {
    pub action: Action,
    pub file: PathBuf,
    pub socket: Option<PathBuf>,
    pub json: bool,
    pub follow: bool,
    pub tail: Option<usize>,
    pub names: Vec<String>,
    /// `stop`: leave the members that depend on it running.
    pub no_deps: bool,
}

/// A failure: the message and the exit status.
struct Failure(String, i32);

/// Runs a client command; returns podvisor's exit status.
pub fn client(options: &ClientOptions) -> i32 {
    match talk(options) {
        Ok(()) => 0,
        Err(Failure(message, code)) => {
            say!("podvisor {}: {message}", options.action.name());
            code
        }
    }
}

fn connect(options: &ClientOptions) -> Result<(UnixStream, PathBuf), Failure> {
    let socket = options.socket.clone().or_else(|| {
        std::env::var_os("PODVISOR_SOCKET")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    });
    if socket.is_none() && !options.file.exists() {
        return Err(Failure(
            format!(
                "no deployment file {} here, so no deployment to talk to (give --file FILE or --socket PATH)",
                options.file.display()
            ),
            UNREACHABLE,
        ));
    }
    let path = control::locate(socket.as_deref(), &options.file, false)
        .map_err(|m| Failure(m, UNREACHABLE))?;
    // Which deployment: the file's, or the one at the socket given.
    let which = match socket {
        Some(_) => format!("at {}", path.display()),
        None => format!("of {}", options.file.display()),
    };
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(Failure(
                format!(
                    "no running deployment {which}: {} is not a socket",
                    path.display()
                ),
                UNREACHABLE,
            ));
        }
    }
    let stream = UnixStream::connect(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Failure(
            format!(
                "no running deployment {which} (no control socket {})",
                path.display()
            ),
            UNREACHABLE,
        ),
        std::io::ErrorKind::ConnectionRefused => Failure(
            format!(
                "no running deployment {which} (control socket {} is stale: nobody answers)",
                path.display()
            ),
            UNREACHABLE,
        ),
        // Refused by the file system rather than by the deployment: the same status.
        std::io::ErrorKind::PermissionDenied => Failure(
            format!("permission denied: cannot connect to {}", path.display()),
            REFUSED,
        ),
        _ => Failure(
            format!("cannot connect to {}: {e}", path.display()),
            UNREACHABLE,
        ),
    })?;
    let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
    let _ = stream.set_write_timeout(Some(ANSWER_TIMEOUT));
    Ok((stream, path))
}

/// The request line of `options`.
pub fn request(options: &ClientOptions) -> String {
    let mut line = format!("{{\"v\":{VERSION},\"cmd\":{}", quote(options.action.name()));
    if !options.names.is_empty() {
        let names: Vec<String> = options.names.iter().map(|n| quote(n)).collect();
        line += &format!(",\"names\":[{}]", names.join(","));
    }
    if options.action == Action::Stop && options.no_deps {
        line += ",\"no_deps\":true";
    }
    if options.action == Action::Logs {
        if let Some(tail) = options.tail {
            line += &format!(",\"tail\":{tail}");
        }
        if options.follow {
            line += ",\"follow\":true";
        }
    }
    line + "}\n"
}

struct Answers {
    reader: BufReader<UnixStream>,
    path: PathBuf,
}

impl Answers {
    /// The next answer line; `None` when the deployment closed the connection.
    fn next(&mut self) -> Result<Option<Value>, Failure> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => json::parse(&line).map(Some).map_err(|e| {
                Failure(
                    format!("unreadable answer from {}: {e}", self.path.display()),
                    UNREACHABLE,
                )
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(Failure(
                    format!(
                        "no answer from {} within {}s",
                        self.path.display(),
                        ANSWER_TIMEOUT.as_secs()
                    ),
                    UNREACHABLE,
                ))
            }
            Err(e) => Err(Failure(
                format!("reading from {}: {e}", self.path.display()),
                UNREACHABLE,
            )),
        }
    }

    /// The first answer, which must be `ok`.
    fn header(&mut self) -> Result<Value, Failure> {
        let answer = self.next()?.ok_or_else(|| {
            Failure(
                format!(
                    "{} closed the connection without an answer",
                    self.path.display()
                ),
                UNREACHABLE,
            )
        })?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(answer);
        }
        let message = answer.get("error").and_then(Value::as_str).map_or_else(
            || format!("unexpected answer {}", answer.to_json()),
            str::to_string,
        );
        Err(Failure(message, REFUSED))
    }

    fn unbounded(&mut self) {
        let _ = self.reader.get_ref().set_read_timeout(None);
    }
}

fn talk(options: &ClientOptions) -> Result<(), Failure> {
    let (mut stream, path) = connect(options)?;
    let written = stream.write_all(request(options).as_bytes());
    let mut answers = Answers {
        reader: BufReader::new(stream),
        path,
    };
    if let Err(e) = written {
        // A deployment that refuses (another user's) answers before reading: say why.
        return Err(match answers.header() {
            Err(refused @ Failure(_, REFUSED)) => refused,
            _ => Failure(
                format!("writing to {}: {e}", answers.path.display()),
                UNREACHABLE,
            ),
        });
    }
    let header = match answers.header() {
        // The request went out: the deployment may still act on it.
        Err(Failure(message, UNREACHABLE)) if options.action == Action::Down => {
            return Err(Failure(
                format!("{message}; the deployment may still close later (see podvisor ps)"),
                UNREACHABLE,
            ))
        }
        header => header?,
    };
    match options.action {
        Action::Ps => {
            let members = match header.get("members") {
                Some(Value::Array(members)) => members.clone(),
                _ => Vec::new(),
            };
            if options.json {
                for member in &members {
                    out!("{}", member.to_json());
                }
            } else {
                print_table(&members);
            }
        }
        Action::Logs | Action::Events => {
            if options.follow || options.action == Action::Events {
                answers.unbounded();
            }
            while let Some(answer) = answers.next()? {
                if answer.get("done").is_some() {
                    break;
                }
                show(options, &answer);
            }
        }
        Action::Down => {
            say!("podvisor down: the deployment is closing");
            answers.unbounded();
            // The connection ends when the deployment has.
            while answers.next()?.is_some() {}
            say!("podvisor down: the deployment is down");
        }
        Action::Stop | Action::Start | Action::Restart => {
            let members = match header.get("members") {
                Some(Value::Array(members)) => members.as_slice(),
                _ => &[],
            };
            let verb = match options.action {
                Action::Stop => "stopping",
                Action::Start => "starting",
                _ => "restarting",
            };
            // A dependent follows the member it depends on.
            let mut named = "?";
            for member in members {
                let name = member.get("name").and_then(Value::as_str).unwrap_or("?");
                let command = options.action.name();
                match member.get("result").and_then(Value::as_str) {
                    Some("dependent") => {
                        say!("podvisor {command}: {name} {verb} (depends on {named})")
                    }
                    Some("done") => {
                        named = name;
                        say!("podvisor {command}: {name} {verb}")
                    }
                    Some(other) => {
                        named = name;
                        say!("podvisor {command}: {name} {other}")
                    }
                    None => {}
                }
            }
        }
    }
    Ok(())
}

/// One streamed answer: a line of output, an event, or a lost-lines marker.
fn show(options: &ClientOptions, answer: &Value) {
    if let (Some(pod), Some(line)) = (
        answer.get("pod").and_then(Value::as_str),
        answer.get("line").and_then(Value::as_str),
    ) {
        out!("[{pod}] {line}");
        return;
    }
    match answer.get("event") {
        Some(Value::String(kind)) if kind == "lagged" => {
            let missed = answer.get("missed").and_then(Value::as_u64).unwrap_or(0);
            if options.json {
                out!("{{\"pod\":\"podvisor\",\"event\":\"lagged\",\"missed\":{missed}}}");
            } else {
                out!("podvisor: lagged: {missed} lines were lost (this client read too slowly)");
            }
        }
        Some(event @ Value::Object(_)) => {
            if options.json {
                out!("{}", event.to_json());
            } else if let Some(text) = answer.get("text").and_then(Value::as_str) {
                out!("{text}");
            }
        }
        _ => {}
    }
}

fn print_table(members: &[Value]) {
    let text = |m: &Value, key: &str| match m.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(v) => v.to_json(),
    };
    let mut rows = vec![[
        "NAME",
        "STATE",
        "HEALTH",
        "PID",
        "UPTIME",
        "RESTARTS",
        "LAST EXIT",
        "HEALTH FAILURE",
    ]
    .map(str::to_string)];
    for m in members {
        let uptime = m
            .get("uptime")
            .and_then(Value::as_f64)
            .map_or("-".to_string(), uptime);
        rows.push([
            text(m, "name"),
            text(m, "state"),
            text(m, "health"),
            text(m, "pid"),
            uptime,
            text(m, "restarts"),
            text(m, "last_exit"),
            health_failure(m),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out!("{}", cells.join("  ").trim_end());
    }
}

/// The last health failure of a member of `ps --json`: `2× file:/run/ok: /run/ok does
/// not exist` (failures in a row now, the check, why), the watchdog's cause, or `-`.
fn health_failure(m: &Value) -> String {
    let message = m.get("health_message").and_then(Value::as_str);
    match (m.get("health_check").and_then(Value::as_str), message) {
        (Some(check), Some(message)) => {
            let failures = m
                .get("health_failures")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            format!("{failures}× {check}: {message}")
        }
        (None, Some(message)) => message.to_string(),
        _ => "-".to_string(),
    }
}

/// `45s`, `3m04s`, `2h05m`, `3d04h`.
fn uptime(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line() {
        let options = ClientOptions {
            action: Action::Logs,
            file: "podvisor.toml".into(),
            socket: None,
            json: false,
            follow: true,
            tail: Some(3),
            names: vec!["web".into(), "a\"b".into()],
            no_deps: false,
        };
        let line = request(&options);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let parsed = control::parse_request(line.trim_end().as_bytes()).unwrap();
        assert_eq!(parsed.names, options.names);
        assert_eq!((parsed.tail, parsed.follow), (Some(3), true));
    }

    #[test]
    fn uptimes_read_well() {
        assert_eq!(uptime(4.7), "4s");
        assert_eq!(uptime(184.0), "3m04s");
        assert_eq!(uptime(7500.0), "2h05m");
        assert_eq!(uptime(3.0 * 86400.0 + 4.0 * 3600.0), "3d04h");
    }
}
