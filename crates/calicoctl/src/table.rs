//! Tables as olekukonko/tablewriter draws them by default (calicoctl ≤ 3.31), for `node status` and
//! the `ipam` verbs: a `+---+` box, centred upper-cased headers, numbers right-aligned and everything
//! else left-aligned, long cells wrapped.

/// The widest a cell grows before its text is wrapped (tablewriter's MAX_ROW_WIDTH).
const MAX_CELL_WIDTH: usize = 30;

/// A table as tablewriter draws it by default: `+---+` rules above and below the upper-cased,
/// centred header and below the rows; cells padded by one space, left-aligned unless numeric; each
/// column as wide as its widest cell, a cell over 30 wide wrapped at spaces into lines of about 30.
pub fn box_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths = vec![0; headers.len()];
    let mut wrap = |column: usize, text: &str| {
        let (lines, width) = wrap_cell(text);
        widths[column] = widths[column].max(width);
        lines
    };
    let headers: Vec<Vec<String>> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| wrap(i, h))
        .collect();
    let rows: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|row| row.iter().enumerate().map(|(i, c)| wrap(i, c)).collect())
        .collect();

    let rule = {
        let mut line = String::from("+");
        for w in &widths {
            line.push_str(&"-".repeat(w + 2));
            line.push('+');
        }
        line.push('\n');
        line
    };
    let mut out = rule.clone();
    print_lines(&mut out, &headers, &widths, |text, width| {
        centred(&text.to_uppercase(), width)
    });
    out.push_str(&rule);
    for row in &rows {
        print_lines(&mut out, row, &widths, |text, width| {
            if is_numeric(text.trim()) {
                format!("{text:>width$}")
            } else {
                format!("{text:<width$}")
            }
        });
    }
    out.push_str(&rule);
    out
}

/// One table row, as many lines as its tallest cell.
fn print_lines(
    out: &mut String,
    cells: &[Vec<String>],
    widths: &[usize],
    pad: impl Fn(&str, usize) -> String,
) {
    let height = cells.iter().map(Vec::len).max().unwrap_or(0);
    for line in 0..height {
        out.push('|');
        for (cell, width) in cells.iter().zip(widths) {
            let text = cell.get(line).map_or("", String::as_str);
            out.push(' ');
            out.push_str(&pad(text, *width));
            out.push_str(" |");
        }
        out.push('\n');
    }
}

/// Centred with the odd space on the right.
fn centred(text: &str, width: usize) -> String {
    let gap = width.saturating_sub(text.chars().count());
    let left = gap / 2;
    format!("{}{text}{}", " ".repeat(left), " ".repeat(gap - left))
}

/// tablewriter's test for right-aligning: a decimal number (`1,234.5`, `-7`) or a percentage.
fn is_numeric(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    if let Some(number) = unsigned.strip_suffix('%') {
        // `\d+\.?\d*%`
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        return digits(whole) && (fraction.is_empty() || digits(fraction));
    }
    // `(\d{1,3}(,\d{3})*|\d+)(\.\d+)?`
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    if fraction.is_some_and(|f| !digits(f)) {
        return false;
    }
    let mut groups = whole.split(',');
    let first = groups.next().unwrap_or("");
    let rest: Vec<&str> = groups.collect();
    if rest.is_empty() {
        return digits(first);
    }
    digits(first) && first.len() <= 3 && rest.iter().all(|g| g.len() == 3 && digits(g))
}

/// A cell's lines and the width its column needs: the cell's lines joined into one paragraph and
/// wrapped to the cell's width capped at 30 (a word longer than that widens the column).
fn wrap_cell(text: &str) -> (Vec<String>, usize) {
    let widest = text.split('\n').map(width).max().unwrap_or(0);
    let limit = widest.min(MAX_CELL_WIDTH);
    let paragraph = text.split('\n').collect::<Vec<_>>().join(" ");
    let lines = wrap_paragraph(&paragraph, limit);
    let needed = lines.iter().map(|l| width(l)).max().unwrap_or(0).max(limit);
    (lines, needed)
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// Lines of at most `limit` (or the longest word) with the least raggedness: the sum over all lines
/// but the last of the square of the room left, found by dynamic programming from the end, the first
/// of equally good breaks taken.
fn wrap_paragraph(text: &str, limit: usize) -> Vec<String> {
    const TOO_LONG: usize = 100_000;
    let words: Vec<&str> = text.split(' ').collect();
    let limit = words.iter().map(|w| width(w)).max().unwrap_or(0).max(limit);
    let n = words.len();
    // span(i, j): the width of words i..=j on one line.
    let prefix: Vec<usize> = std::iter::once(0)
        .chain(words.iter().scan(0, |sum, w| {
            *sum += width(w);
            Some(*sum)
        }))
        .collect();
    let span = |i: usize, j: usize| prefix[j + 1] - prefix[i] + (j - i);
    let mut cost = vec![usize::MAX; n];
    let mut next_break = vec![n; n];
    for i in (0..n).rev() {
        if span(i, n - 1) <= limit {
            cost[i] = 0;
            continue;
        }
        for j in i + 1..n {
            let line = span(i, j - 1);
            let room = limit.abs_diff(line);
            let mut c = (room * room).saturating_add(cost[j]);
            if line > limit {
                c = c.saturating_add(TOO_LONG);
            }
            if c < cost[i] {
                cost[i] = c;
                next_break[i] = j;
            }
        }
    }
    let mut lines = Vec::new();
    let mut i = 0;
    while i < n {
        lines.push(words[i..next_break[i]].join(" "));
        i = next_break[i];
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_look_like_tablewriters() {
        let t = box_table(
            &["PROPERTY", "VALUE"],
            &[
                vec!["StrictAffinity".into(), "false".into()],
                vec!["MaxBlocksPerHost".into(), "0".into()],
            ],
        );
        assert_eq!(
            t,
            "+------------------+-------+\n\
             |     PROPERTY     | VALUE |\n\
             +------------------+-------+\n\
             | StrictAffinity   | false |\n\
             | MaxBlocksPerHost |     0 |\n\
             +------------------+-------+\n"
        );
        let empty = box_table(&["IP", "SINCE"], &[]);
        assert_eq!(
            empty,
            "+----+-------+\n| IP | SINCE |\n+----+-------+\n+----+-------+\n"
        );
        assert!(is_numeric("65536") && is_numeric("1,024") && is_numeric("-1.5"));
        assert!(
            !is_numeric("3 (5%)") && !is_numeric("1e+05") && !is_numeric("") && !is_numeric("1,0")
        );
    }

    #[test]
    fn wrapping_is_least_ragged() {
        // Greedy filling would put four words on the first line; tablewriter balances the lines.
        assert_eq!(
            wrap_paragraph("aaaa bbbb cccc dddd eeee", 20),
            ["aaaa bbbb cccc dddd", "eeee"]
        );
        assert_eq!(
            wrap_paragraph("aaaaaaaaaa bb cc dddddddddd", 15),
            ["aaaaaaaaaa bb", "cc dddddddddd"]
        );
        // A word longer than the limit gets a line of its own.
        assert_eq!(
            wrap_paragraph("a bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb c", 30),
            ["a", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "c"]
        );
        assert_eq!(wrap_paragraph("", 30), [""]);
    }

    #[test]
    fn numbers_are_right_aligned() {
        for yes in [
            "7", "-7", "1,234", "1234", "12.5", "1,234.50", "50%", "-2.5%",
        ] {
            assert!(is_numeric(yes), "{yes}");
        }
        for no in [
            "",
            "10.0.0.2",
            "1,23",
            "12,3456",
            "fd00::1",
            "up",
            "1.",
            "06:48:39",
            "2021-03-01",
        ] {
            assert!(!is_numeric(no), "{no}");
        }
    }
}
