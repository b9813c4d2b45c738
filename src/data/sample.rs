//! Seeded, stratified subsets (`--limit N`) and train/test splits.
//!
//! Evaluating on 200 rows of a 5,000-row file must give the same rows on every run and machine
//! (reports record the seed) and keep the label mix, or a rare class can vanish from the
//! sample and its recall with it. So:
//! - rows are grouped by label (unlabelled rows form one group, which makes a plain sample);
//! - each group gets its share of `n` by largest remainder, and, when `n` is at least the
//!   number of labels, at least one row;
//! - within a group, rows are drawn by a partial Fisher-Yates shuffle driven directly by
//!   `ChaCha8Rng::next_u64` (whose stream is fixed by its spec), not by `rand`'s sampling
//!   helpers, whose algorithms may change between `rand` releases; each group has its own
//!   ChaCha stream keyed by its label, so one group's draw does not depend on the others;
//! - the result keeps file order.

use std::collections::HashMap;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use crate::data::Example;

/// `n` examples keeping label proportions, in file order; all of them when `n >= len`.
pub fn stratified_sample(examples: &[Example], n: usize, seed: u64) -> Vec<Example> {
    if n >= examples.len() {
        return examples.to_vec();
    }
    let groups = groups(examples);
    let counts: Vec<usize> = groups.iter().map(|g| g.indices.len()).collect();
    let take = allocate(&counts, n, &counts);
    let chosen = choose(&groups, &take, seed);
    chosen.into_iter().map(|i| examples[i].clone()).collect()
}

/// Splits into (train, test), both in file order, test holding about `test_fraction` of rows
/// with the same label mix.
///
/// `test_fraction` is clamped to 0..=1 (NaN counts as 0); validate it where the user types it.
/// Every label keeps at least one row in train, because a model cannot learn a label it never
/// sees; so a label with a single row is never in test, and test may come out smaller than
/// asked for when labels are tiny.
pub fn stratified_split(
    examples: &[Example],
    test_fraction: f64,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    let fraction = if test_fraction.is_nan() {
        0.0
    } else {
        test_fraction.clamp(0.0, 1.0)
    };
    let groups = groups(examples);
    let counts: Vec<usize> = groups.iter().map(|g| g.indices.len()).collect();
    let caps: Vec<usize> = counts.iter().map(|c| c.saturating_sub(1)).collect();
    // `as` saturates, so no fraction can overflow here.
    let n_test = (examples.len() as f64 * fraction).round() as usize;
    let take = allocate(&counts, n_test, &caps);
    let mut in_test = vec![false; examples.len()];
    for i in choose(&groups, &take, seed) {
        in_test[i] = true;
    }
    let (test, train): (Vec<_>, Vec<_>) = examples.iter().zip(in_test).partition(|(_, t)| *t);
    let unzip = |v: Vec<(&Example, bool)>| v.into_iter().map(|(e, _)| e.clone()).collect();
    (unzip(train), unzip(test))
}

/// The rows of one label (or of the unlabelled rows).
struct Group<'a> {
    label: Option<&'a str>,
    indices: Vec<usize>,
}

/// Rows grouped by label, groups in first-seen order, indices ascending.
fn groups(examples: &[Example]) -> Vec<Group<'_>> {
    let mut position: HashMap<Option<&str>, usize> = HashMap::new();
    let mut out: Vec<Group> = Vec::new();
    for (i, example) in examples.iter().enumerate() {
        let label = example.label.as_deref();
        let g = *position.entry(label).or_insert_with(|| {
            out.push(Group {
                label,
                indices: Vec::new(),
            });
            out.len() - 1
        });
        out[g].indices.push(i);
    }
    out
}

/// How many rows to take from each group: `n` split in proportion to `counts` by largest
/// remainder, never more than `caps[i]`, and at least one for every group with room when `n`
/// covers them all.
///
/// Remainders are compared exactly (as `n * count mod total`), ties going to the larger group
/// and then the earlier one, so the allocation never depends on float rounding.
fn allocate(counts: &[usize], n: usize, caps: &[usize]) -> Vec<usize> {
    let total: u128 = counts.iter().map(|&c| c as u128).sum();
    let n = n.min(caps.iter().sum());
    if total == 0 || n == 0 {
        return vec![0; counts.len()];
    }
    let share = |i: usize| n as u128 * counts[i] as u128; // quota * total
    let mut take: Vec<usize> = (0..counts.len())
        .map(|i| ((share(i) / total) as usize).min(caps[i]))
        .collect();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| {
        (share(b) % total)
            .cmp(&(share(a) % total))
            .then(counts[b].cmp(&counts[a]))
            .then(a.cmp(&b))
    });
    hand_out(&mut take, n, caps, &order);
    at_least_one_each(&mut take, caps, |i| share(i) as i128, total as i128);
    take
}

/// Adds single rows in `order`, round after round, until `take` sums to `n` (caps allowing).
fn hand_out(take: &mut [usize], n: usize, caps: &[usize], order: &[usize]) {
    let mut left = n - take.iter().sum::<usize>();
    while left > 0 {
        let before = left;
        for &i in order {
            if left > 0 && take[i] < caps[i] {
                take[i] += 1;
                left -= 1;
            }
        }
        if left == before {
            return; // every group is full; cannot happen since n <= sum(caps)
        }
    }
}

/// Gives each empty group with room one row, taken from the group most above its exact quota.
fn at_least_one_each(
    take: &mut [usize],
    caps: &[usize],
    share: impl Fn(usize) -> i128,
    total: i128,
) {
    let eligible = (0..take.len()).filter(|&i| caps[i] > 0).count();
    if take.iter().sum::<usize>() < eligible {
        return;
    }
    for i in 0..take.len() {
        if take[i] > 0 || caps[i] == 0 {
            continue;
        }
        // Over-allocation of j, scaled by `total`: take[j] - quota[j].
        let over = |j: usize| take[j] as i128 * total - share(j);
        let donor = (0..take.len())
            .filter(|&j| take[j] >= 2)
            .max_by(|&a, &b| over(a).cmp(&over(b)).then(b.cmp(&a)));
        let Some(donor) = donor else { return };
        take[donor] -= 1;
        take[i] += 1;
    }
}

/// The chosen row indices, ascending.
fn choose(groups: &[Group], take: &[usize], seed: u64) -> Vec<usize> {
    let mut chosen: Vec<usize> = Vec::new();
    for (group, &k) in groups.iter().zip(take) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream_for(group.label));
        chosen.extend(
            partial_shuffle(&mut rng, group.indices.len(), k)
                .into_iter()
                .map(|p| group.indices[p]),
        );
    }
    chosen.sort_unstable();
    chosen
}

/// A ChaCha stream number for a label: the first 8 bytes of SHA-256 over a tag and the label.
fn stream_for(label: Option<&str>) -> u64 {
    let mut hasher = Sha256::new();
    match label {
        Some(l) => {
            hasher.update([1u8]);
            hasher.update(l.as_bytes());
        }
        None => hasher.update([0u8]),
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// `k` distinct positions out of `0..len`, uniformly, by a partial Fisher-Yates shuffle.
fn partial_shuffle(rng: &mut ChaCha8Rng, len: usize, k: usize) -> Vec<usize> {
    let mut positions: Vec<usize> = (0..len).collect();
    let k = k.min(len);
    for i in 0..k {
        let j = i + below(rng, (len - i) as u64) as usize;
        positions.swap(i, j);
    }
    positions.truncate(k);
    positions
}

/// A uniform integer in `0..bound` (`bound >= 1`), by rejection so there is no modulo bias.
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let bound = bound.max(1);
    let zone = (1u128 << 64) / bound as u128 * bound as u128;
    loop {
        let x = rng.next_u64();
        if (x as u128) < zone {
            return x % bound;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_remainder_allocation() {
        assert_eq!(allocate(&[60, 30, 10], 10, &[60, 30, 10]), vec![6, 3, 1]);
        // quotas 2.5, 1.5, 1.0: remainders tie, so the larger group wins the spare row
        assert_eq!(allocate(&[50, 30, 20], 5, &[50, 30, 20]), vec![3, 1, 1]);
    }

    #[test]
    fn every_label_gets_one_when_n_allows() {
        // quotas 1.8, 0.9, 0.3 -> 2, 1, 0 -> C takes one from A
        assert_eq!(allocate(&[60, 30, 10], 3, &[60, 30, 10]), vec![1, 1, 1]);
        // fewer rows than labels: no minimum
        assert_eq!(
            allocate(&[90, 5, 5], 2, &[90, 5, 5]).iter().sum::<usize>(),
            2
        );
    }

    #[test]
    fn caps_are_respected_and_leftover_moves_on() {
        assert_eq!(allocate(&[4, 1], 3, &[3, 0]), vec![3, 0]);
        assert_eq!(allocate(&[2, 2], 10, &[1, 1]), vec![1, 1]);
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!((0..1000).all(|_| below(&mut rng, 7) < 7));
        assert_eq!(below(&mut rng, 1), 0);
    }

    #[test]
    fn partial_shuffle_gives_distinct_positions() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut p = partial_shuffle(&mut rng, 50, 20);
        p.sort_unstable();
        p.dedup();
        assert_eq!(p.len(), 20);
        assert!(p.iter().all(|&x| x < 50));
    }
}
