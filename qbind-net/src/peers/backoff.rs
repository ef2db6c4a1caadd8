//! Reconnection delays: exponential in the number of consecutive failures,
//! capped, with random jitter so that many nodes do not retry in lock step.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with jitter.
#[derive(Clone, Debug)]
pub struct BackoffConfig {
    /// Delay after the first failure (default 1 s).
    pub base: Duration,
    /// Largest delay (default 5 min).
    pub max: Duration,
    /// Jitter as a fraction of the delay, 0.0..=1.0 (default 0.2): the delay
    /// is drawn uniformly from `d·(1−j) ..= d·(1+j)`, then capped at `max`.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

impl BackoffConfig {
    /// The delay before the next attempt after `failures` consecutive failures (≥ 1).
    pub fn delay<R: Rng + ?Sized>(&self, failures: u32, rng: &mut R) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let nominal = self.base.saturating_mul(1u32 << exp).min(self.max);
        let j = self.jitter.clamp(0.0, 1.0);
        let factor = if j > 0.0 {
            rng.gen_range(1.0 - j..=1.0 + j)
        } else {
            1.0
        };
        nominal.mul_f64(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn grows_exponentially_with_bounded_jitter_and_cap() {
        let cfg = BackoffConfig {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            jitter: 0.2,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for (failures, nominal) in [(1u32, 100u64), (2, 200), (3, 400), (4, 800)] {
            let d = cfg.delay(failures, &mut rng).as_millis() as u64;
            assert!(
                d >= nominal * 8 / 10 && d <= nominal * 12 / 10,
                "{failures}: {d}"
            );
        }
        assert!(cfg.delay(40, &mut rng) <= Duration::from_secs(2));
        let ds: Vec<Duration> = (0..20).map(|_| cfg.delay(3, &mut rng)).collect();
        assert!(ds.iter().any(|d| *d != ds[0]), "jitter varies the delay");
    }
}
