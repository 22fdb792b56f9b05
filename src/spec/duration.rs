//! Lengths of time written in specs and on the command line, and the one parser behind them:
//! `<number><unit>` groups summed into seconds (`sum_of_groups`). Its two grammars are thin
//! wrappers: [`Duration::parse`] for PKI lifetimes (`10y`, `30d`, `1y30d`) and [`parse_wait`]
//! for waits (`30s`, `2m`, `1h` or plain seconds). A leaf of the spec layer: it imports nothing
//! from its siblings.

use std::fmt;

/// A span of time written as `100y`, `10y`, `30d`, `12h` (a year is 365 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Duration {
    /// Length in seconds.
    pub secs: i64,
}

impl Duration {
    /// Parses `<number><unit>` groups (`1y`, `90d`, `1y30d`); units `y`, `w`, `d`, `h`; more
    /// than zero in all.
    pub fn parse(s: &str) -> Option<Duration> {
        let secs = sum_of_groups(s, &[("y", 365 * 86_400), ("w", 7 * 86_400), ("d", 86_400), ("h", 3_600)], None)?;
        let secs = i64::try_from(secs).ok()?;
        (secs > 0).then_some(Duration { secs })
    }

    /// Whole days (rounded down).
    pub fn days(self) -> i64 {
        self.secs / 86_400
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.secs / 86_400;
        let h = (self.secs % 86_400) / 3_600;
        match (d, h) {
            (0, h) => write!(f, "{h}h"),
            (d, 0) if d % 365 == 0 => write!(f, "{}y", d / 365),
            (d, 0) => write!(f, "{d}d"),
            (d, h) => write!(f, "{d}d{h}h"),
        }
    }
}

/// A wait written `30s`, `2m`, `1h` or as plain seconds (surrounding blanks ignored): one
/// number with an optional unit `s`, `m` or `h`; zero allowed.
pub fn parse_wait(text: &str) -> Option<std::time::Duration> {
    sum_of_groups(text.trim(), &[("", 1), ("s", 1), ("m", 60), ("h", 3_600)], Some(1)).map(std::time::Duration::from_secs)
}

/// Seconds written with units in a spec (`check.interval`, `check.timeout`, `unit.start_timeout`):
/// `<number><unit>` groups with units `s`, `m` and `h` (`2s`, `1m`, `1h30m`); a bare number is
/// written as a TOML integer, not a string.
pub fn parse_seconds(text: &str) -> Option<u64> {
    sum_of_groups(text, &[("s", 1), ("m", 60), ("h", 3_600)], None)
}

/// Seconds in `text` written as `<digits><unit>` groups (`1y30d`), summed: `units` names every
/// accepted unit (`""`: a bare number) with its length in seconds. `None` when a group lacks its
/// digits, a unit is not in `units`, there is no group or more than `max_groups`, or the sum
/// overflows.
fn sum_of_groups(text: &str, units: &[(&str, u64)], max_groups: Option<usize>) -> Option<u64> {
    let mut rest = text;
    let mut total: u64 = 0;
    let mut groups = 0;
    while !rest.is_empty() {
        let (digits, after) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len()));
        let (unit, next) = after.split_at(after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len()));
        let n: u64 = digits.parse().ok()?;
        let (_, len) = units.iter().find(|(u, _)| *u == unit)?;
        total = total.checked_add(n.checked_mul(*len)?)?;
        groups += 1;
        rest = next;
    }
    (groups > 0 && max_groups.is_none_or(|max| groups <= max)).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_with_units() {
        assert_eq!(parse_seconds("2s"), Some(2));
        assert_eq!(parse_seconds("1m"), Some(60));
        assert_eq!(parse_seconds("1h30m"), Some(5_400));
        assert_eq!(parse_seconds("0s"), Some(0));
        for bad in ["", "2", "s", "1.5s", "2 s", "1d", "-1s", "99999999999999999999h"] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("100y").map(|d| d.days()), Some(36_500));
        assert_eq!(Duration::parse("30d").map(|d| d.secs), Some(30 * 86_400));
        assert_eq!(Duration::parse("12h").map(|d| d.secs), Some(43_200));
        assert_eq!(Duration::parse("1y30d").map(|d| d.days()), Some(395));
        for bad in ["", "10", "y", "10 y", "30days", "1.5y", "0d", "-1d", "99999999999999999999y"] {
            assert_eq!(Duration::parse(bad), None, "{bad}");
        }
        assert_eq!(Duration::parse("10y").unwrap().to_string(), "10y");
        assert_eq!(Duration::parse("36h").unwrap().to_string(), "1d12h");
    }

    #[test]
    fn waits() {
        let secs = |t: &str| parse_wait(t).map(|d| d.as_secs());
        assert_eq!(secs("0"), Some(0));
        assert_eq!(secs("45"), Some(45));
        assert_eq!(secs(" 30s "), Some(30));
        assert_eq!(secs("2m"), Some(120));
        assert_eq!(secs("1h"), Some(3_600));
        for bad in ["", "s", "1d", "1m30s", "1.5m", "-1", "+1", "5 m", "2M", "99999999999999999999", "999999999999999999h"] {
            assert_eq!(secs(bad), None, "{bad}");
        }
    }
}
