//! Durations on the command line and in scenario files (`250ms`, `2s`, `1.5s`, `1m30s`),
//! parsed one way everywhere so `--timeout`, `--latency` and a step's `think` agree.

use std::time::Duration;

/// Parses one or more number-unit pairs, largest unit first (`us`, `ms`, `s`, `m`, `h`;
/// numbers may have a fraction), or a bare `0`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| {
        format!(
            "bad duration {text:?}: {why} (use e.g. 500ms, 2s, 1.5s, 1m30s; units us, ms, s, m, h)"
        )
    };
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..digits]
            .parse()
            .map_err(|_| bad("expected a number"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit_secs, rank) = match &rest[..unit_len] {
            "h" => (3600.0, 4),
            "m" | "min" => (60.0, 3),
            "s" => (1.0, 2),
            "ms" => (1e-3, 1),
            "us" | "µs" => (1e-6, 0),
            "" => return Err(bad("a number needs a unit")),
            other => return Err(bad(&format!("unknown unit {other:?}"))),
        };
        if rank >= last_rank {
            return Err(bad("units must go from largest to smallest, each once"));
        }
        last_rank = rank;
        let part = Duration::try_from_secs_f64(n * unit_secs).map_err(|_| bad("it is too long"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| bad("it is too long"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Like [`parse`], for options that must be more than zero and at most `max`.
pub fn parse_within(text: &str, max: Duration) -> Result<Duration, String> {
    let d = parse(text)?;
    if d.is_zero() || d > max {
        return Err(format!(
            "{text:?} is out of range (more than 0, at most {max:?})"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_fractions_and_zero() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse(" 20us "), Ok(Duration::from_micros(20)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        for bad in [
            "",
            "10",
            "ten",
            "5x",
            "1s1m",
            "1s1s",
            "s",
            "1..5s",
            "-1s",
            "99999999999999999999h",
            "5",
            "x",
            "1x",
            "5 parsecs",
            "1e999s",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("bad duration"), "{bad}: {e}");
        }
        assert!(parse_within("0s", Duration::from_secs(60)).is_err());
        assert!(parse_within("2m", Duration::from_secs(60)).is_err());
        assert_eq!(
            parse_within("1m", Duration::from_secs(60)),
            Ok(Duration::from_secs(60))
        );
    }
}
