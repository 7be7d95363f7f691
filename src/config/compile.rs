//! A [`PodConfig`] compiled, once, into what the core decides with: its [`PodSpec`] (the
//! checks and their probe schedules, the ready deadline, the grace period, health checks
//! and the watchdog), validated in one place.

use std::time::Duration;

use super::{Host, PodConfig, Readiness, LOCAL_PROBE_INTERVAL};
use crate::config::ConfigError;
use crate::core::{Check, PodSpec, ProbeSchedule, Stream};

impl PodConfig {
    /// The core's spec this configuration compiles to: what the pod's state machine
    /// decides with (its checks and their schedules, the ready deadline, the grace period),
    /// validated as [`Pod::new`](crate::Pod::new) validates it. A model of the pod on
    /// virtual time (a simulator, a test) runs a [`PodMachine`](crate::core::PodMachine)
    /// on it.
    pub fn spec(&self) -> Result<PodSpec, ConfigError> {
        self.core_spec()
    }

    /// The core's view of this configuration.
    pub(crate) fn core_spec(&self) -> Result<PodSpec, ConfigError> {
        if self.program.is_empty() {
            return Err(ConfigError::EmptyProgram {
                name: self.name.clone(),
            });
        }
        let mut spec = PodSpec::default()
            .timeout_ready(self.timeout_ready)
            .grace(self.grace)
            .started_by(self.started_by);
        for (index, readiness) in self.readiness.iter().enumerate() {
            let check = match readiness {
                Readiness::Notify => Check::Notify,
                Readiness::Stdout(text) | Readiness::Stderr(text) if text.is_empty() => {
                    return Err(ConfigError::EmptyReadyText {
                        name: self.name.clone(),
                        check: index,
                    })
                }
                Readiness::Stdout(text) => Check::Output {
                    stream: Stream::Stdout,
                    text: text.clone(),
                },
                Readiness::Stderr(text) => Check::Output {
                    stream: Stream::Stderr,
                    text: text.clone(),
                },
                Readiness::Http(url) => {
                    crate::probe::HttpTarget::parse(url).map_err(|reason| {
                        ConfigError::BadReadiness {
                            name: self.name.clone(),
                            check: index,
                            reason,
                        }
                    })?;
                    Check::Probe(self.schedule_for(readiness))
                }
                Readiness::Exec(command) if command.trim().is_empty() => {
                    return Err(ConfigError::BadReadiness {
                        name: self.name.clone(),
                        check: index,
                        reason: "the command is empty".into(),
                    })
                }
                Readiness::Tcp { .. } | Readiness::File(_) | Readiness::Exec(_) => {
                    Check::Probe(self.schedule_for(readiness))
                }
            };
            spec = spec.check(check);
        }
        for (index, health) in self.health.iter().enumerate() {
            let bad = |reason: String| ConfigError::BadHealth {
                name: self.name.clone(),
                check: index,
                reason,
            };
            match health {
                Readiness::Notify | Readiness::Stdout(_) | Readiness::Stderr(_) => {
                    return Err(bad(format!(
                        "{health} can only say ready; a health check is tcp:HOST:PORT, http://HOST:PORT/PATH, exec:COMMAND or file:PATH"
                    )))
                }
                Readiness::Http(url) => {
                    crate::probe::HttpTarget::parse(url).map_err(bad)?;
                }
                Readiness::Exec(command) if command.trim().is_empty() => {
                    return Err(bad("the command is empty".into()))
                }
                Readiness::Tcp { .. } | Readiness::File(_) | Readiness::Exec(_) => {}
            }
            spec = spec.health(self.health_schedule);
        }
        if let Some(watchdog) = self.watchdog {
            if matches!(self.host, Host::Thread(_)) {
                return Err(ConfigError::WatchdogOnThread {
                    name: self.name.clone(),
                });
            }
            spec = spec.watchdog(Some(watchdog));
        }
        spec.validate().map_err(|error| ConfigError::Spec {
            name: self.name.clone(),
            error,
        })?;
        Ok(spec)
    }

    /// The schedule of the probe of `readiness`.
    fn schedule_for(&self, readiness: &Readiness) -> ProbeSchedule {
        let mut schedule = self.default_schedule_for(readiness);
        if let Some(timeout) = self.ready_timeout {
            schedule.attempt_timeout = timeout;
        }
        schedule
    }

    fn default_schedule_for(&self, readiness: &Readiness) -> ProbeSchedule {
        if let Some(schedule) = self.ready_schedule {
            return schedule;
        }
        let host = match readiness {
            Readiness::Tcp { host, .. } => Some(host.clone()),
            Readiness::Http(url) => crate::probe::HttpTarget::parse(url).ok().map(|t| t.host),
            _ => None,
        };
        let local = host.is_some_and(|h| {
            h.eq_ignore_ascii_case("localhost")
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if matches!(readiness, Readiness::File(_)) {
            // One attempt waits for the file (inotify); it is only cut and tried again
            // when its directory cannot be watched.
            return ProbeSchedule {
                attempt_timeout: Duration::from_secs(3600),
                ..ProbeSchedule::default()
            };
        }
        if local {
            // Refused connections on loopback cost microseconds: try often.
            ProbeSchedule {
                initial_interval: LOCAL_PROBE_INTERVAL,
                max_interval: LOCAL_PROBE_INTERVAL,
                ..ProbeSchedule::default()
            }
        } else {
            ProbeSchedule::default()
        }
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    fn schedule(config: &PodConfig) -> ProbeSchedule {
        match config.core_spec().unwrap().checks[0] {
            Check::Probe(schedule) => schedule,
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn local_targets_are_tried_often_and_remote_ones_back_off() {
        let local = Duration::from_millis(15);
        for check in [
            "tcp:localhost:80",
            "tcp:127.0.0.1:80",
            "tcp:[::1]:80",
            "http://127.0.0.2:8080/health",
        ] {
            let config = PodConfig::new("x").ready(check.parse().unwrap());
            let s = schedule(&config);
            assert_eq!(
                (s.initial_interval, s.max_interval),
                (local, local),
                "{check}"
            );
        }
        let file = PodConfig::new("x").ready("file:/tmp/x".parse().unwrap());
        assert_eq!(schedule(&file).attempt_timeout, Duration::from_secs(3600));
        for check in ["tcp:db.example:5432", "http://10.0.0.1/", "exec:true"] {
            let config = PodConfig::new("x").ready(check.parse().unwrap());
            assert_eq!(schedule(&config), ProbeSchedule::default(), "{check}");
        }
        let tuned = PodConfig::new("x")
            .ready("tcp:db.example:5432".parse().unwrap())
            .ready_interval(Duration::from_millis(250));
        let s = schedule(&tuned);
        assert_eq!(s.initial_interval, Duration::from_millis(10));
        assert_eq!(s.max_interval, Duration::from_millis(250));
        let zero = PodConfig::new("x")
            .ready("tcp:localhost:1".parse().unwrap())
            .ready_interval(Duration::ZERO);
        assert!(zero.core_spec().is_err());
    }
}
