//! Command-line parsing (no parser crate: the grammar is small and the errors are ours).

use std::ffi::OsString;

use podvisor::core::deployment::RestartPolicy;
use podvisor::{PodConfig, Readiness, Signal};

use crate::duration::parse_duration;
use crate::file::{check_pod_name, printable};

pub const USAGE: &str = "\
podvisor: take a command (or a deployment of them) through its life: start, wait until it
is ready or has failed, close it gracefully, reap everything.

Usage:
  podvisor run [OPTIONS] -- COMMAND [ARGS...]
  podvisor up [--json] [FILE]  run a deployment file (default podvisor.toml)
  podvisor check [FILE]        validate a deployment file (default podvisor.toml)
  podvisor --help | --version

Options of run:
  --name NAME             name used in messages (default: the program's name); up to 63
                          characters of A-Z, a-z, 0-9, '_', '.' and '-'
  --ready PROBE           none (default), notify, stdout:TEXT, stderr:TEXT, tcp:HOST:PORT,
                          http://HOST:PORT/PATH, file:PATH, exec:COMMAND; repeatable, all
                          must hold
  --timeout-ready DUR     time allowed to become ready (default 600s; 0 = no limit)
  --grace DUR             time between the stop signal and SIGKILL (default 10s)
  --stop-signal SIG       signal that asks the command to stop (default TERM)
  --env KEY=VALUE         set a variable for the command (repeatable)
  --env-clear             start the command from an empty environment
  --restart POLICY        no (default), on-failure or always: restart with exponential
                          backoff (100 ms doubling to 30 s, jitter, reset after 60 s
                          ready, at most 5 restarts in a row, then give up)
  --json                  report state changes as JSON lines on stderr

Durations need a unit: 250ms, 10s, 2m, 1m30s. SIGINT/SIGTERM close the command gracefully;
a second one kills its process group at once. SIGHUP, SIGUSR1, SIGUSR2 and SIGWINCH are
forwarded to the command's process group.

Exit status: 0 closed on request after ready or exited 0 by itself; 124 readiness timed
out; 125 podvisor usage error; 126/127 command cannot be executed/not found; 1 ended
before ready with status 0; 128+N closed by signal N before ready; otherwise the command's
status (N, or 128+S if killed by signal S).";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print the usage.
    Help,
    /// Print the version.
    Version,
    /// Run one pod.
    Run(Box<RunOptions>),
    /// Check a deployment file.
    Check(std::path::PathBuf),
    /// Run a deployment file.
    Up {
        file: std::path::PathBuf,
        json: bool,
    },
}

/// `podvisor run`'s options.
#[derive(Debug)]
pub struct RunOptions {
    pub config: PodConfig,
    pub json: bool,
    pub restart: RestartPolicy,
}

fn text(arg: &OsString) -> Result<&str, String> {
    arg.to_str()
        .ok_or_else(|| format!("argument {arg:?} is not valid UTF-8"))
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<OsString>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Err("missing command; expected run, up or check".into());
    };
    match text(&first)? {
        "-h" | "--help" | "help" => Ok(Command::Help),
        "-V" | "--version" => Ok(Command::Version),
        "run" => parse_run(args.collect()).map(|o| Command::Run(Box::new(o))),
        "check" => parse_file_arg("check", args.collect()).map(Command::Check),
        "up" => {
            let mut rest: Vec<OsString> = args.collect();
            let json = rest.iter().any(|a| a == "--json");
            rest.retain(|a| a != "--json");
            parse_file_arg("up", rest).map(|file| Command::Up { file, json })
        }
        other => Err(format!(
            "unknown command {other:?}; expected run, up or check"
        )),
    }
}

/// `[FILE]`, `podvisor.toml` by default.
fn parse_file_arg(command: &str, args: Vec<OsString>) -> Result<std::path::PathBuf, String> {
    let mut args = args.into_iter();
    let file = args
        .next()
        .map_or_else(|| "podvisor.toml".into(), std::path::PathBuf::from);
    if let Some(extra) = args.next() {
        return Err(format!(
            "{command} takes one FILE; unexpected argument {extra:?}"
        ));
    }
    if file.to_str().is_some_and(|f| f.starts_with('-')) {
        return Err(format!(
            "unknown option {file:?} for {command}; usage: podvisor {command} [FILE]"
        ));
    }
    Ok(file)
}

fn parse_run(args: Vec<OsString>) -> Result<RunOptions, String> {
    let mut name = None;
    let mut ready: Vec<Readiness> = Vec::new();
    let mut none = false;
    let mut timeout_ready = Some(podvisor::core::DEFAULT_TIMEOUT_READY);
    let mut grace = podvisor::core::DEFAULT_GRACE;
    let mut stop_signal = Signal::TERM;
    let mut env: Vec<(String, OsString)> = Vec::new();
    let mut env_clear = false;
    let mut json = false;
    let mut restart = RestartPolicy::No;
    let mut iter = args.into_iter();
    let mut command: Vec<OsString> = Vec::new();
    while let Some(arg) = iter.next() {
        let flag = match arg.to_str() {
            Some(flag) => flag.to_string(),
            None => {
                command.push(arg);
                break;
            }
        };
        if flag == "--" {
            break;
        }
        if !flag.starts_with('-') || flag == "-" {
            command.push(arg);
            break;
        }
        // --option=value or --option value
        let (option, inline) = match flag.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o.to_string(), Some(v.to_string())),
            _ => (flag.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => iter
                    .next()
                    .ok_or_else(|| format!("{option} needs a value: {what}"))
                    .and_then(|v| text(&v).map(str::to_string)),
            }
        };
        match option.as_str() {
            "--name" => {
                let given = value("NAME")?;
                check_pod_name(&given).map_err(|e| format!("--name: {e}"))?;
                name = Some(given);
            }
            "--ready" => {
                let probe = value("PROBE")?;
                if probe == "none" {
                    none = true;
                } else {
                    ready.push(probe.parse().map_err(|e| format!("--ready: {e}"))?);
                }
            }
            "--timeout-ready" => {
                let d =
                    parse_duration(&value("DUR")?).map_err(|e| format!("--timeout-ready: {e}"))?;
                timeout_ready = (!d.is_zero()).then_some(d);
            }
            "--grace" => {
                grace = parse_duration(&value("DUR")?).map_err(|e| format!("--grace: {e}"))?
            }
            "--stop-signal" => {
                stop_signal =
                    Signal::from_name(&value("SIG")?).map_err(|e| format!("--stop-signal: {e}"))?
            }
            "--env" => {
                let pair = value("KEY=VALUE")?;
                match pair.split_once('=') {
                    Some((key, v)) if !key.is_empty() => env.push((key.to_string(), v.into())),
                    _ => {
                        return Err(format!(
                            "--env {pair:?}: expected KEY=VALUE with a non-empty KEY"
                        ))
                    }
                }
            }
            "--env-clear" => env_clear = true,
            "--restart" => {
                restart = match value("no|on-failure|always")?.as_str() {
                    "no" => RestartPolicy::No,
                    "on-failure" => RestartPolicy::OnFailure,
                    "always" => RestartPolicy::Always,
                    other => {
                        return Err(format!(
                        "--restart: unknown policy {other:?}; expected no, on-failure or always"
                    ))
                    }
                }
            }
            "--json" => json = true,
            "-h" | "--help" => return Err("HELP".into()),
            other => {
                return Err(format!(
                    "unknown option {other:?} for run; see podvisor --help"
                ))
            }
        }
        if inline.is_some() && matches!(option.as_str(), "--env-clear" | "--json") {
            return Err(format!("{option} takes no value"));
        }
    }
    command.extend(iter);
    if none && !ready.is_empty() {
        return Err("--ready none cannot be combined with other --ready checks".into());
    }
    let mut command = command.into_iter();
    let program = command
        .next()
        .ok_or("missing COMMAND; usage: podvisor run [OPTIONS] -- COMMAND [ARGS...]")?;
    let mut config = PodConfig::new(program).args(command);
    match name {
        Some(name) => config = config.name(name),
        None => {
            // The program's file name, which may hold anything: shown escaped.
            let default = printable(config.get_name()).into_owned();
            config = config.name(default);
        }
    }
    for check in ready {
        config = config.ready(check);
    }
    for (key, value) in env {
        config = config.env(key, value);
    }
    if env_clear {
        config = config.env_clear();
    }
    let config = config
        .timeout_ready(timeout_ready)
        .grace(grace)
        .stop_signal(stop_signal)
        .stdout(podvisor::Output::Forward)
        .stderr(podvisor::Output::Forward)
        .forward_prefix("");
    Ok(RunOptions {
        config,
        json,
        restart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(args: &[&str]) -> Result<RunOptions, String> {
        let mut all = vec![OsString::from("run")];
        all.extend(args.iter().map(OsString::from));
        match parse(all)? {
            Command::Run(options) => Ok(*options),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_and_command() {
        let options = run(&[
            "--name",
            "web",
            "--grace=2s",
            "--json",
            "--",
            "sleep",
            "--help",
        ])
        .unwrap();
        assert_eq!(options.config.get_name(), "web");
        assert_eq!(options.config.get_grace(), Duration::from_secs(2));
        assert!(options.json);
        assert_eq!(options.config.get_program(), "sleep");
        let options = run(&["--ready", "tcp:localhost:80", "--ready", "notify", "true"]).unwrap();
        assert_eq!(options.config.get_program(), "true");
    }

    #[test]
    fn names_follow_the_pod_name_rule_and_a_default_name_is_made_printable() {
        let longest = "a".repeat(63);
        let options = run(&["--name", &longest, "x"]).unwrap();
        assert_eq!(options.config.get_name(), longest);
        let options = run(&["--name", "web-1.a_b", "x"]).unwrap();
        assert_eq!(options.config.get_name(), "web-1.a_b");
        // Without --name, the program's file name, whatever it is, escaped.
        let options = run(&["--", "/bin/odd\u{1b}[2Jname"]).unwrap();
        assert_eq!(options.config.get_name(), "odd\\u{1b}[2Jname");
        let options = run(&["--", "/usr/bin/my program"]).unwrap();
        assert_eq!(options.config.get_name(), "my program");
    }

    #[test]
    fn env_splits_at_the_first_equals_sign() {
        // The name ends at the first '=': a name can never hold one.
        let options = run(&["--env", "A=B=x", "--env=C=", "y"]).unwrap();
        let shown = format!("{:?}", options.config);
        assert!(
            shown.contains(r#"("A", "B=x")"#) && shown.contains(r#"("C", "")"#),
            "{shown}"
        );
    }

    #[test]
    fn errors_are_specific() {
        let cases: &[(&[&str], &str)] = &[
            (&["--grace", "10", "--", "x"], "did you mean 10s?"),
            (&["--timeout-ready"], "needs a value"),
            (
                &["--timeout-ready", "0.0000000001s", "x"],
                "--timeout-ready: duration \"0.0000000001s\" is under 1ms",
            ),
            (
                &["--grace=0.5ms", "x"],
                "--grace: duration \"0.5ms\" is under 1ms",
            ),
            (&["--ready", "tcp:80", "x"], "--ready"),
            (
                &["--ready", "none", "--ready", "notify", "x"],
                "cannot be combined",
            ),
            (&["--stop-signal", "TREM", "x"], "unknown signal"),
            (&["--env", "=x", "y"], "KEY=VALUE"),
            (&["--env", "A", "y"], "expected KEY=VALUE with a non-empty KEY"),
            (&["--bogus", "x"], "unknown option \"--bogus\""),
            (&["--json=yes", "x"], "takes no value"),
            (&["--name", "x"], "missing COMMAND"),
            (&["--restart", "sometimes", "x"], "unknown policy"),
            (
                &["--name", "web\u{1b}[31m", "x"],
                "--name: pod name \"web\\u{1b}[31m\": '\\u{1b}' is not allowed; expected 1 to 63 characters",
            ),
            (&["--name", "my web", "x"], "' ' is not allowed"),
            (&["--name=", "x"], "is empty"),
            (
                &["--name", &"n".repeat(64), "x"],
                "has 64 characters; expected 1 to 63",
            ),
        ];
        for (args, needle) in cases {
            let error = run(args).unwrap_err();
            assert!(error.contains(needle), "{args:?}: {error}");
        }
        assert!(parse(vec![]).unwrap_err().contains("missing command"));
        assert!(parse(vec!["stop".into()])
            .unwrap_err()
            .contains("unknown command"));
    }
}
