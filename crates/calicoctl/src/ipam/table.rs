//! Tables as olekukonko/tablewriter draws them (calicoctl ≤ 3.31): a `+---+` box, centred headers,
//! numbers right-aligned and everything else left-aligned; numbers as Go's `%.5g`.

use std::fmt::Write as _;

fn is_number(cell: &str) -> bool {
    let s = cell.trim();
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let int_ok = digits(int)
        || int
            .split(',')
            .enumerate()
            .all(|(i, g)| digits(g) && if i == 0 { g.len() <= 3 } else { g.len() == 3 })
            && int.contains(',');
    int_ok && frac.is_none_or(digits)
}

pub fn box_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    let line = |out: &mut String| {
        out.push('+');
        for w in &widths {
            out.push_str(&"-".repeat(w + 2));
            out.push('+');
        }
        out.push('\n');
    };
    line(&mut out);
    out.push('|');
    for (h, w) in headers.iter().zip(&widths) {
        let gap = w - width(h);
        let left = gap / 2;
        let _ = write!(out, " {}{h}{} |", " ".repeat(left), " ".repeat(gap - left));
    }
    out.push('\n');
    line(&mut out);
    for row in rows {
        out.push('|');
        for (cell, w) in row.iter().zip(&widths) {
            let pad = " ".repeat(w - width(cell));
            if is_number(cell) {
                let _ = write!(out, " {pad}{cell} |");
            } else {
                let _ = write!(out, " {cell}{pad} |");
            }
        }
        out.push('\n');
    }
    line(&mut out);
    out
}

/// Go's `%.5g` for a count.
pub fn go_g5(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let sci = format!("{value:.4e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..5).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = usize::try_from(4 - exp).unwrap_or(0);
        trim(&format!("{value:.decimals$}"))
    }
}

pub fn with_percentage(n: f64, capacity: f64) -> String {
    format!("{} ({:.0}%)", go_g5(n), 100.0 * n / capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_gos_percent_5g() {
        assert_eq!(go_g5(0.0), "0");
        assert_eq!(go_g5(64.0), "64");
        assert_eq!(go_g5(65536.0), "65536");
        assert_eq!(go_g5(99999.0), "99999");
        assert_eq!(go_g5(100000.0), "1e+05");
        assert_eq!(go_g5(1048576.0), "1.0486e+06");
        assert_eq!(go_g5(16777216.0), "1.6777e+07");
        assert_eq!(go_g5(2f64.powi(80)), "1.2089e+24");
        assert_eq!(with_percentage(3.0, 64.0), "3 (5%)");
        assert_eq!(with_percentage(15381.0, 16384.0), "15381 (94%)");
    }

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
        assert!(is_number("65536") && is_number("1,024") && is_number("-1.5"));
        assert!(!is_number("3 (5%)") && !is_number("1e+05") && !is_number("") && !is_number("1,0"));
    }
}
