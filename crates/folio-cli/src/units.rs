//! Parsing of sizes (`1GiB`, `512M`, `64k`, `4096`) and percentages.

/// Parses a byte size: a number with an optional unit (k, K, KiB, KB = 1024; M, MiB; G, GiB; T).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 4096, 64k, 512MiB, 1GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// A size given either in bytes or as a percentage of something.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SizeOrPercent {
    /// Bytes.
    Bytes(u64),
    /// Percent (0 to 100).
    Percent(f64),
}

impl SizeOrPercent {
    /// Resolves against `whole`.
    pub fn resolve(self, whole: u64) -> u64 {
        match self {
            SizeOrPercent::Bytes(b) => b,
            SizeOrPercent::Percent(p) => (whole as f64 * p / 100.0) as u64,
        }
    }
}

/// Parses `25%` or a size.
pub fn parse_size_or_percent(s: &str) -> Result<SizeOrPercent, String> {
    if let Some(p) = s.trim().strip_suffix('%') {
        let v: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a percentage"))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("{s:?}: a percentage is from 0 to 100"));
        }
        return Ok(SizeOrPercent::Percent(v));
    }
    parse_size(s).map(SizeOrPercent::Bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5M").unwrap(), 3 << 19);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(
            parse_size_or_percent("25%").unwrap(),
            SizeOrPercent::Percent(25.0)
        );
        assert!(parse_size_or_percent("125%").is_err());
    }
}
