//! Latency percentiles by the nearest-rank method.

/// The `p`-th percentile (0–100) of `samples` by nearest rank: the smallest
/// sample with at least `p` % of the samples at or below it. `None` for no
/// samples. Sorts `samples`.
#[must_use]
pub fn percentile(samples: &mut [f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples.get(rank.clamp(1, samples.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut none: [f64; 0] = [];
        assert_eq!(percentile(&mut none, 50.0), None);
        let mut one = [7.0];
        assert_eq!(percentile(&mut one, 0.0), Some(7.0));
        assert_eq!(percentile(&mut one, 99.0), Some(7.0));
        // 1..=100 shuffled: p50 is 50, p99 is 99, p100 is 100.
        let mut hundred: Vec<f64> = (1..=100).map(|i| f64::from((i * 37) % 100 + 1)).collect();
        assert_eq!(percentile(&mut hundred, 50.0), Some(50.0));
        assert_eq!(percentile(&mut hundred, 99.0), Some(99.0));
        assert_eq!(percentile(&mut hundred, 100.0), Some(100.0));
        assert_eq!(percentile(&mut hundred, 0.0), Some(1.0));
        let mut four = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&mut four, 50.0), Some(2.0));
        assert_eq!(percentile(&mut four, 51.0), Some(3.0));
    }
}
