//! Numbers as calicoctl's `ipam` verbs print them: Go's `%.5g`, with a percentage of a capacity.

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
}
