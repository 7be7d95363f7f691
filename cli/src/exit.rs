//! The exit status of `podvisor run` and `podvisor up`.

use podvisor::core::{SpawnErrorKind, StartFailure};
use podvisor::{End, ExitStatus, StartResult};

/// The command's usage or configuration was wrong.
pub const USAGE: i32 = 125;
/// Readiness timed out.
pub const TIMED_OUT: i32 = 124;
/// Closed as unhealthy after ready: a health check failed past its threshold, or the
/// watchdog expired.
pub const UNHEALTHY: i32 = 122;

/// `N` for an exit code, `128 + S` for a signal.
pub fn of_status(status: ExitStatus) -> i32 {
    status.shell_status()
}

/// The status for a pod that started as `start` and ended as `end`; `requested` is the
/// signal that made podvisor close it, if one did.
pub fn exit_code(start: &StartResult, end: Option<End>, requested: Option<i32>) -> i32 {
    match start {
        StartResult::TimedOut { .. } => TIMED_OUT,
        StartResult::FailedToStart(StartFailure::Spawn(error)) => match error.kind {
            SpawnErrorKind::NotFound => 127,
            SpawnErrorKind::PermissionDenied | SpawnErrorKind::Other => 126,
        },
        StartResult::FailedToStart(StartFailure::Runtime { status, .. })
        | StartResult::ExitedEarly { status } => match of_status(*status) {
            0 => 1,
            n => n,
        },
        StartResult::Cancelled => 128 + requested.unwrap_or(15),
        StartResult::Ready { .. } => match end {
            Some(End::Closed(_)) if requested.is_some() => 0,
            Some(End::Unhealthy { .. }) => UNHEALTHY,
            Some(End::Exited(status) | End::Closed(status) | End::Killed(status)) => {
                of_status(status)
            }
            Some(End::NeverSpawned) | None => 0,
            // An end this command does not know yet: a failure without a status.
            Some(_) => 1,
        },
        // A start result this command does not know yet: a failure.
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podvisor::core::{CheckSet, SpawnError};
    use std::time::Duration;

    const READY: StartResult = StartResult::Ready {
        after: Duration::ZERO,
    };

    #[test]
    fn every_row_of_the_table() {
        let sigint = Some(2);
        // Closed on request after ready, within the grace period.
        assert_eq!(
            exit_code(&READY, Some(End::Closed(ExitStatus::Signal(15))), sigint),
            0
        );
        // Exits 0 by itself.
        assert_eq!(
            exit_code(&READY, Some(End::Exited(ExitStatus::Code(0))), None),
            0
        );
        // Closed on request before ready.
        assert_eq!(
            exit_code(
                &StartResult::Cancelled,
                Some(End::Closed(ExitStatus::Signal(15))),
                sigint
            ),
            130
        );
        assert_eq!(
            exit_code(&StartResult::Cancelled, Some(End::NeverSpawned), Some(15)),
            143
        );
        // Readiness timed out.
        let timed_out = StartResult::TimedOut {
            waited: Duration::from_secs(1),
            pending: CheckSet::EMPTY,
        };
        assert_eq!(
            exit_code(&timed_out, Some(End::Closed(ExitStatus::Signal(15))), None),
            124
        );
        // Cannot be executed / not found.
        let spawn = |kind| {
            StartResult::FailedToStart(StartFailure::Spawn(SpawnError { kind, errno: None }))
        };
        assert_eq!(
            exit_code(
                &spawn(SpawnErrorKind::PermissionDenied),
                Some(End::NeverSpawned),
                None
            ),
            126
        );
        assert_eq!(
            exit_code(
                &spawn(SpawnErrorKind::NotFound),
                Some(End::NeverSpawned),
                None
            ),
            127
        );
        // Ended before ready with status 0.
        let early = |status| StartResult::ExitedEarly { status };
        assert_eq!(exit_code(&early(ExitStatus::Code(0)), None, None), 1);
        let unhealthy = End::Unhealthy {
            cause: podvisor::Unhealthy::WatchdogTrigger,
            status: ExitStatus::Signal(6),
            killed: false,
        };
        assert_eq!(exit_code(&READY, Some(unhealthy), None), UNHEALTHY);
        assert_eq!(exit_code(&READY, Some(unhealthy), Some(2)), UNHEALTHY);
        // Otherwise N or 128 + S.
        assert_eq!(exit_code(&early(ExitStatus::Code(3)), None, None), 3);
        assert_eq!(exit_code(&early(ExitStatus::Signal(11)), None, None), 139);
        assert_eq!(
            exit_code(&READY, Some(End::Exited(ExitStatus::Code(7))), None),
            7
        );
        assert_eq!(
            exit_code(&READY, Some(End::Killed(ExitStatus::Signal(9))), sigint),
            137
        );
        let runtime = StartResult::FailedToStart(StartFailure::Runtime {
            status: ExitStatus::Code(2),
            error: None,
            errno: None,
        });
        assert_eq!(exit_code(&runtime, None, None), 2);
    }
}
