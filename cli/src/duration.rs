//! Durations on the command line and in files: `250ms`, `10s`, `2m`, `1m30s`, `1h`, and
//! systemd's spellings (`us`/`usec`, `msec`, `sec`/`second(s)`, `min`/`minute(s)`,
//! `hr`/`hour(s)`, `d`/`day(s)`, `w`/`week(s)`, `M`/`month(s)` (30.44 days), `y`/`year(s)`
//! (365.25 days), `ns`/`nsec`, parts separated by spaces as in `5min 30s`); `0` is the one
//! bare number accepted. Apart from zero, nothing under 1 ms.

use std::time::Duration;

/// The shortest duration accepted other than 0: anything shorter would be rounded away
/// (to "no limit" for `timeout_ready`) or meaningless to a timer.
pub const MIN_DURATION: Duration = Duration::from_millis(1);

/// Parses a duration; the error says what was wrong and what is expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(
            "empty duration; expected a number with a unit, e.g. 250ms, 10s, 2m, 1m30s".into(),
        );
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "duration {text:?} has no unit; did you mean {text}s? (or {text}ms; 0 is the only bare number)"
        ));
    }
    let mut total = Duration::ZERO;
    // Whether any part is above zero: "0s" is an explicit zero, "0.0000001s" is not.
    let mut some_part_nonzero = false;
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("duration {text:?}: expected a number at {rest:?}"));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration {text:?}: {:?} is not a number", &rest[..digits]))?;
        some_part_nonzero |= number > 0.0;
        rest = &rest[digits..];
        rest = rest.trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        const UNITS: &str = "ns, us, ms, s, m (or min), h, d, w, M (month), y, or systemd's \
             nsec, usec, msec, sec, minute, hour, day, week, month, year";
        let seconds = match unit {
            "ns" | "nsec" => number / 1_000_000_000.0,
            "us" | "usec" | "µs" => number / 1_000_000.0,
            "ms" | "msec" => number / 1000.0,
            "s" | "sec" | "second" | "seconds" => number,
            "m" | "min" | "minute" | "minutes" => number * 60.0,
            "h" | "hr" | "hour" | "hours" => number * 3600.0,
            "d" | "day" | "days" => number * 86_400.0,
            "w" | "week" | "weeks" => number * 604_800.0,
            // systemd's month and year: 30.44 and 365.25 days.
            "M" | "month" | "months" => number * 2_629_800.0,
            "y" | "year" | "years" => number * 31_557_600.0,
            "" => {
                return Err(format!(
                    "duration {text:?}: {number} has no unit; expected {UNITS}"
                ))
            }
            other => {
                return Err(format!(
                    "duration {text:?}: unknown unit {other:?}; expected {UNITS}"
                ))
            }
        };
        let part = Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("duration {text:?} is out of range"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("duration {text:?} is out of range"))?;
    }
    if some_part_nonzero && total < MIN_DURATION {
        return Err(format!(
            "duration {text:?} is under 1ms; the smallest duration is 1ms, or 0"
        ));
    }
    Ok(total)
}

/// Formats a duration the way it is parsed (`1.5s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        let s = d.as_secs_f64();
        if s.fract() == 0.0 {
            format!("{s:.0}s")
        } else {
            format!("{s:.3}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_units_and_combinations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn accepts_systemd_spellings() {
        let cases = [
            ("5min 30s", 330_000),
            ("5min30sec", 330_000),
            ("2 minutes", 120_000),
            ("1d", 86_400_000),
            ("1 day 2 hours", 93_600_000),
            ("1hr", 3_600_000),
            ("250msec", 250),
            ("1500000us", 1500),
            ("1500000usec", 1500),
            ("3 seconds", 3000),
            ("1w", 604_800_000),
            ("2 weeks", 1_209_600_000),
            ("1week", 604_800_000),
            ("1M", 2_629_800_000),
            ("1 month", 2_629_800_000),
            ("1y", 31_557_600_000),
            ("1 year", 31_557_600_000),
            ("1000000ns", 1),
            ("2000000nsec", 2),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_bare_numbers_and_bad_units() {
        assert!(parse_duration("10")
            .unwrap_err()
            .contains("did you mean 10s?"));
        assert!(parse_duration("5 min")
            .map(|d| d == Duration::from_secs(300))
            .unwrap_or(false));
        assert!(parse_duration("5 lightyears")
            .unwrap_err()
            .contains("expected ns, us, ms, s, m (or min), h, d, w"));
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration("10x")
            .unwrap_err()
            .contains("unknown unit \"x\""));
        assert!(parse_duration("s")
            .unwrap_err()
            .contains("expected a number"));
        assert!(parse_duration("1..2s")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_duration("99999999999999999999h")
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn refuses_durations_under_a_millisecond_but_not_an_explicit_zero() {
        for tiny in ["0.0000000001s", "0.5ms", "0.00001m", "0s0.1ms", "999999ns"] {
            let error = parse_duration(tiny).unwrap_err();
            assert!(
                error.contains("smallest duration is 1ms"),
                "{tiny}: {error}"
            );
            assert!(error.contains(&format!("{tiny:?}")), "{error}");
        }
        for zero in ["0", "0s", "0ms", "0.0s", "0m0s"] {
            assert_eq!(parse_duration(zero), Ok(Duration::ZERO), "{zero}");
        }
        assert_eq!(parse_duration("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_duration("0.001s"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn formats_back() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.500s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
