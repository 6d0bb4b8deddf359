//! Durations as users write them in specs: `30s`, `5m`, `2h`, `1h30m`, `500ms`.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The pattern the API server checks (as a CEL rule) before a duration is stored.
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|h|m|s))+$";

/// The longest duration any spec field accepts: one year. Longer ones are no real delay, and
/// a bound keeps every sum of a time and a duration far inside the range of a timestamp.
pub const MAX: std::time::Duration = std::time::Duration::from_secs(8760 * 3600);

/// [`MAX`] as users write it.
pub const MAX_TEXT: &str = "8760h";

/// The pattern a duration must match before CEL's `duration()` reads it: each number short
/// enough for its unit that no string of the field's 32 characters overflows the API
/// server's 64-bit nanoseconds (so the rule answers with its message, never an evaluation
/// error). It accepts every duration up to [`MAX`] written without leading zeros.
const CEL_SAFE_PATTERN: &str = "^([0-9]{1,4}h|[0-9]{1,6}m|[0-9]{1,8}s|[0-9]{1,11}ms)+$";

/// A duration string such as `30s`, `5m`, `2h` or `1h30m` (units `h`, `m`, `s`, `ms`).
///
/// The schema carries a CEL rule, so a malformed duration is rejected at `kubectl apply`;
/// [`Duration::parse`] is still total, because stored objects may predate a rule change.
/// Every duration is at most [`MAX_TEXT`] (one year), checked by the API server and again by
/// [`Duration::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration(pub String);

/// Why a duration string could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{value:?} is not a duration: {reason} (write it like 30s, 5m, 2h or 1h30m)")]
pub struct DurationError {
    /// The text that was given.
    pub value: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl Duration {
    /// Reads the string into a [`std::time::Duration`] of at most [`MAX`]; a longer one is
    /// an error (objects stored before the schema bound it still get a clear answer).
    pub fn parse(&self) -> Result<std::time::Duration, DurationError> {
        let length = parse_duration(&self.0)?;
        if length > MAX {
            return Err(DurationError {
                value: self.0.clone(),
                reason: "it is longer than 8760h (one year), the longest duration accepted",
            });
        }
        Ok(length)
    }

    /// Reads the string into a [`jiff::SignedDuration`], saturating: anything too long for one
    /// (hundreds of billions of years) is no real delay, and saturating keeps parsing total.
    pub fn parse_signed(&self) -> Result<jiff::SignedDuration, DurationError> {
        self.parse().map(crate::time::signed)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Duration {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Parses `1h30m`-style text: one or more `<integer><unit>` groups, units `h`, `m`, `s`, `ms`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, DurationError> {
    let fail = |reason| DurationError {
        value: text.to_owned(),
        reason,
    };
    if text.is_empty() {
        return Err(fail("it is empty"));
    }
    let bytes = text.as_bytes();
    let mut total_ms: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(fail("each unit needs a number before it"));
        }
        let amount: u64 = text[start..i]
            .parse()
            .map_err(|_| fail("a number is too large"))?;
        let unit_ms: u64 = if text[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let unit = match bytes.get(i) {
                Some(b'h') => 3_600_000,
                Some(b'm') => 60_000,
                Some(b's') => 1_000,
                Some(_) => return Err(fail("units are h, m, s and ms")),
                None => return Err(fail("the last number has no unit")),
            };
            i += 1;
            unit
        };
        total_ms = amount
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| fail("it is too long"))?;
    }
    Ok(std::time::Duration::from_millis(total_ms))
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [{
                "rule": format!("self.matches('{DURATION_PATTERN}')"),
                "message": "must be a duration such as 30s, 5m, 2h or 1h30m (units h, m, s, ms)"
            }, {
                "rule": format!("!self.matches('{DURATION_PATTERN}') || (self.matches('{CEL_SAFE_PATTERN}') && duration(self) <= duration('{MAX_TEXT}'))"),
                "message": format!("must be at most {MAX_TEXT} (one year)")
            }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    #[test]
    fn reads_the_forms_users_write() {
        assert_eq!(parse_duration("30s"), Ok(Std::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Std::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Std::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Std::from_secs(5400)));
        assert_eq!(parse_duration("1m30s500ms"), Ok(Std::from_millis(90_500)));
        assert_eq!(parse_duration("0s"), Ok(Std::ZERO));
    }

    #[test]
    fn rejects_what_the_schema_rejects() {
        for bad in ["", "5", "m", "1d", "1.5h", "-1s", "1h 30m", "10x"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rejects_overflow_instead_of_wrapping() {
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration("9999999999999999h").is_err());
    }

    #[test]
    fn a_spec_duration_is_at_most_one_year() {
        assert_eq!(Duration::from("8760h").parse(), Ok(MAX));
        assert_eq!(Duration::from("525600m").parse(), Ok(MAX));
        for huge in ["8760h1ms", "100000000h", "9999999999s"] {
            let err = Duration::from(huge).parse().unwrap_err().to_string();
            assert!(err.contains("8760h"), "{err}");
        }
        // The CLI's own flag is not a spec field: only overflow bounds it.
        assert!(parse_duration("100000000h").is_ok());
    }

    #[test]
    fn the_cel_guard_admits_every_duration_up_to_the_bound() {
        let safe = matcher(CEL_SAFE_PATTERN);
        for ok in [
            "8760h",
            "525600m",
            "31536000s",
            "31536000000ms",
            "1h30m",
            "500ms",
            "0s",
        ] {
            assert!(safe(ok), "{ok}");
        }
        // Nothing the guard admits within 32 characters overflows 64-bit nanoseconds.
        let worst = [
            "9999h".repeat(6),
            "999999m".repeat(4),
            "99999999s".repeat(3),
            "99999999999ms".repeat(2),
        ];
        for text in worst {
            assert!(safe(&text) && text.len() <= 32, "{text}");
            let nanos = parse_duration(&text).unwrap().as_nanos();
            assert!(nanos < i64::MAX as u128, "{text}");
        }
        assert!(!safe("100000000h"));
    }

    fn matcher(pattern: &str) -> impl Fn(&str) -> bool {
        let re = regex::Regex::new(pattern).expect("pattern");
        move |text: &str| re.is_match(text)
    }

    #[test]
    fn error_says_how_to_write_it() {
        let err = parse_duration("1d").unwrap_err().to_string();
        assert!(err.contains("\"1d\"") && err.contains("1h30m"), "{err}");
    }
}
