//! How results are shown: aligned tables and relative times for people,
//! the server's own JSON for machines. Colour only on a terminal and never
//! with `NO_COLOR` set (<https://no-color.org>).

use std::io::IsTerminal;

use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned tables and relative times, for people.
    #[default]
    Table,
    /// The API's own JSON, times in RFC 3339, for scripts.
    Json,
}

/// Whether to paint; decided once from where stdout goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn for_stdout() -> Style {
        Style {
            color: std::io::stdout().is_terminal() && !no_color(),
        }
    }

    #[cfg(test)]
    pub fn plain() -> Style {
        Style { color: false }
    }

    /// A rollout, target or gate state in the colour of what it means.
    pub fn state(&self, state: &str) -> Cell {
        Cell::painted(state, self.color.then(|| state_color(state)).flatten())
    }

    pub fn bold(&self, text: &str) -> String {
        if self.color {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// `NO_COLOR` set to anything but the empty string turns colour off.
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// ANSI colour codes: green done well, red gone wrong, yellow moving,
/// magenta waiting for a person or a window, dim not started.
fn state_color(state: &str) -> Option<&'static str> {
    Some(match state {
        "succeeded" | "rolled_out" | "restored" | "pass" | "healthy" => "32",
        "failed" | "restore_failed" | "rolled_back" | "fail" => "31",
        "running" | "applying" | "progressing" | "verifying" | "restoring" | "rolling_back"
        | "baking" => "33",
        "paused" | "awaiting_approval" | "waiting_for_window" | "inconclusive" => "35",
        "pending" | "aborted" => "2",
        _ => return None,
    })
}

/// One table cell: its text and, maybe, its colour. Kept apart so the
/// width is measured on the text, not on escape codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    text: String,
    color: Option<&'static str>,
}

impl Cell {
    pub fn painted(text: &str, color: Option<&'static str>) -> Cell {
        Cell {
            text: text.to_owned(),
            color,
        }
    }

    fn width(&self) -> usize {
        self.text.chars().count()
    }

    pub fn render(&self) -> String {
        match self.color {
            Some(code) => format!("\x1b[{code}m{}\x1b[0m", self.text),
            None => self.text.clone(),
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { text, color: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::from(text.to_owned())
    }
}

/// Columns padded to their widest cell, two spaces apart, headers in caps
/// like `kubectl get`.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.width());
            }
        }
        let mut out = String::new();
        let header: Vec<Cell> = self.headers.iter().map(|h| Cell::from(*h)).collect();
        for row in std::iter::once(&header).chain(self.rows.iter()) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                line.push_str(&cell.render());
                // No padding after the last column: no trailing spaces.
                if i + 1 < columns.min(row.len()) {
                    line.push_str(&" ".repeat(widths[i] - cell.width() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// "just now", "42s ago", "3m ago", "5h ago", "2d ago"; "in 3m" ahead.
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let (ahead, seconds) = if seconds < 0 {
        (true, -seconds)
    } else {
        (false, seconds)
    };
    let span = match seconds {
        0..=1 => return "just now".to_owned(),
        2..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m", seconds / 60),
        3600..=86_399 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    };
    if ahead {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// `relative`, or "-" for a time that is not there.
pub fn relative_opt(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    at.map_or_else(|| "-".to_owned(), |at| relative(at, now))
}

/// A duration in whole seconds as "45s", "2m05s", "1h02m".
pub fn duration(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    match total {
        0..=59 => format!("{total}s"),
        60..=3599 => format!("{}m{:02}s", total / 60, total % 60),
        _ => format!("{}h{:02}m", total / 3600, (total % 3600) / 60),
    }
}

/// The server's JSON, pretty, on stdout.
pub fn print_json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(_) => println!("{value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn times_read_as_people_say_them() {
        let now = at(0);
        assert_eq!(relative(at(0), now), "just now");
        assert_eq!(relative(at(-42), now), "42s ago");
        assert_eq!(relative(at(-185), now), "3m ago");
        assert_eq!(relative(at(-5 * 3600 - 10), now), "5h ago");
        assert_eq!(relative(at(-3 * 86_400), now), "3d ago");
        assert_eq!(relative(at(180), now), "in 3m");
        assert_eq!(relative_opt(None, now), "-");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(4.4), "4s");
        assert_eq!(duration(125.0), "2m05s");
        assert_eq!(duration(3720.0), "1h02m");
    }

    #[test]
    fn columns_line_up_and_colour_codes_do_not_count_toward_width() {
        let style = Style { color: true };
        let mut table = Table::new(&["NAME", "STATE"]);
        table.row(vec!["a-long-name".into(), style.state("running")]);
        table.row(vec!["b".into(), style.state("failed")]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME         STATE");
        assert_eq!(lines[1], "a-long-name  \x1b[33mrunning\x1b[0m");
        assert_eq!(lines[2], "b            \x1b[31mfailed\x1b[0m");
    }

    #[test]
    fn without_colour_a_state_is_its_plain_name() {
        assert_eq!(Style::plain().state("failed").render(), "failed");
    }
}
