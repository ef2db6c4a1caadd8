//! The simulated network: which links are cut by partitions at a time.

use super::Partition;

/// Whether nodes `a` and `b` can reach each other at `now`.
pub(crate) fn connected(partitions: &[Partition], now: u64, a: usize, b: usize) -> bool {
    partitions
        .iter()
        .filter(|p| now >= p.start && now < p.heal)
        .all(|p| p.groups.iter().any(|g| g.contains(&a) && g.contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cut_between_groups_until_they_heal() {
        let p = vec![Partition {
            start: 10,
            heal: 20,
            groups: vec![vec![0, 1], vec![2]],
        }];
        assert!(connected(&p, 5, 0, 2));
        assert!(connected(&p, 15, 0, 1));
        assert!(!connected(&p, 15, 0, 2));
        assert!(!connected(&p, 15, 3, 0), "nodes in no group are isolated");
        assert!(connected(&p, 20, 0, 2));
    }
}
