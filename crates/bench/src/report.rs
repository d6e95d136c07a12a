//! Plain-text tables and the goal summary.

/// A table printed with every column as wide as its widest cell; text columns left-aligned, figures right.
pub struct Table {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, headers: &[&str]) -> Self {
        Table {
            title: title.to_string(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let parts: Vec<String> = (0..columns)
                .map(|i| {
                    let cell = cells.get(i).map(String::as_str).unwrap_or("");
                    if looks_numeric(cell) {
                        format!("{cell:>width$}", width = widths[i])
                    } else {
                        format!("{cell:<width$}", width = widths[i])
                    }
                })
                .collect();
            format!("| {} |", parts.join(" | "))
        };
        let separator = format!(
            "|{}|",
            widths
                .iter()
                .map(|w| "-".repeat(w + 2))
                .collect::<Vec<_>>()
                .join("|")
        );
        let mut out = format!("\n## {}\n\n", self.title);
        out.push_str(&line(&self.headers));
        out.push('\n');
        out.push_str(&separator);
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

/// Figures (possibly with a unit suffix like `x`) align right; words align left.
fn looks_numeric(cell: &str) -> bool {
    let trimmed = cell.trim_end_matches(['x', '%']);
    !trimmed.is_empty()
        && trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ',' || c == '-')
}

/// A stated target and whether this run met it (`None`: could not be measured), or a figure with no
/// target (`informational`).
pub struct Goal {
    pub name: String,
    pub met: Option<bool>,
    pub informational: bool,
    pub detail: String,
}

impl Goal {
    pub fn line(&self) -> String {
        let verdict = match (self.informational, self.met) {
            (true, _) => "figure",
            (false, Some(true)) => "met",
            (false, Some(false)) => "NOT met",
            (false, None) => "not measured",
        };
        format!("- {}: {verdict} ({})", self.name, self.detail)
    }
}

/// `12345.6` as `12,346`: rates read more easily with thousands separators.
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    let rounded = value.round() as i128;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0 {
        out.insert(0, '-');
    }
    out
}

pub fn seconds(value: f64) -> String {
    format!("{value:.3}")
}

pub fn ratio(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}x")
    } else {
        "n/a".into()
    }
}

pub fn mib_from_kib(kib: Option<u64>) -> String {
    match kib {
        Some(kib) => format!("{:.1}", kib as f64 / 1024.0),
        None => "n/a".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(-4321.0), "-4,321");
        assert_eq!(thousands(f64::NAN), "n/a");
    }

    #[test]
    fn table_pads_columns_and_aligns_figures_right() {
        let mut table = Table::new("t", &["case", "items/s"]);
        table.push(vec!["apply".into(), "1,000".into()]);
        table.push(vec!["get".into(), "25".into()]);
        let text = table.render();
        assert!(text.contains("| case  | items/s |"), "{text}");
        assert!(text.contains("| apply |   1,000 |"), "{text}");
        assert!(text.contains("| get   |      25 |"), "{text}");
    }
}
