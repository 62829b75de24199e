//! Numbers and times as people read them: byte counts and agent ping times. A leaf, shared by
//! the CLI's status line and the TUI's views.

/// Bytes in B/KiB/MiB/GiB/TiB with one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("TiB"))
}

/// `2024-05-01T12:03:44Z` → `12:03 UTC (2024-05-01)`; `None` when it is not RFC 3339.
pub fn short_time(rfc3339: &str) -> Option<String> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?
        .to_offset(time::UtcOffset::UTC);
    Some(format!(
        "{:02}:{:02} UTC ({}-{:02}-{:02})",
        t.hour(),
        t.minute(),
        t.year(),
        u8::from(t.month()),
        t.day()
    ))
}

/// Up to `n` of `names` that look like `query`: substring matches first, then by edit
/// distance (at most a third of the query's length, or 2).
pub fn closest(query: &str, names: impl IntoIterator<Item = String>, n: usize) -> Vec<String> {
    let q = query.to_lowercase();
    let limit = (q.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, String)> = names
        .into_iter()
        .filter_map(|name| {
            let lower = name.to_lowercase();
            let score = if lower.contains(&q) || q.contains(&lower) {
                0
            } else {
                strsim::damerau_levenshtein(&q, &lower)
            };
            (score <= limit).then_some((score, name))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(n).map(|(_, name)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn short_time_is_utc() {
        assert_eq!(
            short_time("2024-05-01T14:03:44+02:00").as_deref(),
            Some("12:03 UTC (2024-05-01)")
        );
        assert_eq!(short_time("yesterday"), None);
    }
}
