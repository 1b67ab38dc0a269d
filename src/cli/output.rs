//! How the commands print what they found: aligned tables (`status`, `dead-letters list`),
//! times relative to now (`12s ago`, `in 3m 4s`) and plurals.

use chrono::{DateTime, Utc};

/// `12s ago` / `in 3m 4s`; `-` for no time.
pub(super) fn relative(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(t) = t else {
        return "-".to_string();
    };
    let d = std::time::Duration::from_secs((t - now).num_seconds().unsigned_abs());
    let text = humantime::format_duration(d).to_string();
    if t <= now {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

/// `s` unless there is one.
pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A table of `head` (each heading with whether its column holds numbers) and `rows`.
pub(super) struct Table {
    /// The heading line.
    pub(super) head: String,
    /// A line per row, in the order given.
    pub(super) rows: Vec<String>,
}

/// The heading and the rows as lines, each column as wide as its widest cell and two spaces
/// apart; the columns marked `true` (numbers) aligned right.
pub(super) fn table(head: &[(&str, bool)], rows: &[Vec<String>]) -> Table {
    let widths: Vec<usize> = head
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([h.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(head.iter().zip(&widths))
            .map(|(c, ((_, right), w))| {
                if *right {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    Table {
        head: line(head.iter().map(|(h, _)| *h).collect()),
        rows: rows
            .iter()
            .map(|r| line(r.iter().map(String::as_str).collect()))
            .collect(),
    }
}

impl Table {
    /// Every line, the heading first.
    pub(super) fn print(&self) {
        println!("{}", self.head);
        for line in &self.rows {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_are_as_wide_as_their_contents() {
        let rows = vec![
            vec!["a-rather-long-name".to_string(), "7".into(), "12".into()],
            vec!["b".to_string(), "1234567".into(), "-".into()],
        ];
        let t = table(&[("NAME", false), ("OUTBOX", true), ("DEAD", true)], &rows);
        assert_eq!(t.head, "NAME                 OUTBOX  DEAD");
        assert_eq!(
            t.rows,
            [
                "a-rather-long-name        7    12",
                "b                   1234567     -",
            ]
        );
    }

    #[test]
    fn relative_times_say_ago_or_in() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let past = DateTime::from_timestamp(1_000_000 - 12, 0);
        let future = DateTime::from_timestamp(1_000_000 + 184, 0);
        assert_eq!(relative(past, now), "12s ago");
        assert_eq!(relative(future, now), "in 3m 4s");
        assert_eq!(relative(Some(now), now), "0s ago");
        assert_eq!(relative(None, now), "-");
    }
}
