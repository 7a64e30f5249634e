//! Small statistics, defined precisely because the report prints their definitions.

/// The `p`th percentile of ascending `sorted` values by the nearest-rank method: the value at
/// 1-based rank `ceil(p / 100 * n)` (rank 1 for `p` = 0). `None` when there are no values.
pub fn nearest_rank(sorted: &[f64], p: u32) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // ceil(p * n / 100) in integers, at least 1, at most n.
    let rank = (p as usize * n).div_ceil(100).clamp(1, n);
    sorted.get(rank - 1).copied()
}

/// `part / whole` as a percentage rounded to one decimal place; `None` when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 * 1000.0 / whole as f64).round() / 10.0)
}

/// `v` rounded to two decimal places.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_by_hand() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7.0], 90), Some(7.0));
        // n = 2: median rank ceil(1.0) = 1, p90 rank ceil(1.8) = 2.
        assert_eq!(nearest_rank(&[1.0, 2.0], 50), Some(1.0));
        assert_eq!(nearest_rank(&[1.0, 2.0], 90), Some(2.0));
        // n = 10 (1..=10): median rank 5 -> 5, p90 rank 9 -> 9.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(5.0));
        assert_eq!(nearest_rank(&ten, 90), Some(9.0));
        // n = 11: p90 rank ceil(9.9) = 10.
        let eleven: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(nearest_rank(&eleven, 90), Some(10.0));
        assert_eq!(nearest_rank(&eleven, 0), Some(1.0));
        assert_eq!(nearest_rank(&eleven, 100), Some(11.0));
    }

    #[test]
    fn percent_rounds_to_one_decimal() {
        assert_eq!(percent(1, 3), Some(33.3));
        assert_eq!(percent(2, 3), Some(66.7));
        assert_eq!(percent(0, 3), Some(0.0));
        assert_eq!(percent(1, 0), None);
    }
}
