//! Groups items into batches filled up to a token budget, longest first, so that padding (on
//! devices that pad) and per-batch overhead stay small. Results are put back in input order
//! by the caller through the indices each batch carries.

/// Indices of the items in one batch, and the tokens they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub indices: Vec<usize>,
    pub tokens: usize,
    /// Longest item: what a padded batch would cost per row.
    pub max_len: usize,
}

/// Splits items of the given token lengths into batches whose padded size
/// (`rows * longest`) stays within `max_batch_tokens`, with at most `max_batch_items` rows.
/// Items are sorted by length (longest first, ties by index, so the order is deterministic);
/// an item longer than the budget gets a batch of its own.
pub fn token_budget_batches(
    lengths: &[usize],
    max_batch_tokens: usize,
    max_batch_items: usize,
) -> Vec<Batch> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut batches = Vec::new();
    let mut current = Batch {
        indices: Vec::new(),
        tokens: 0,
        max_len: 0,
    };
    for i in order {
        let len = lengths[i].max(1);
        let max_len = current.max_len.max(len);
        let padded = max_len * (current.indices.len() + 1);
        let full = current.indices.len() >= max_batch_items.max(1) || padded > max_batch_tokens;
        if !current.indices.is_empty() && full {
            batches.push(std::mem::replace(
                &mut current,
                Batch {
                    indices: Vec::new(),
                    tokens: 0,
                    max_len: 0,
                },
            ));
        }
        current.max_len = current.max_len.max(len);
        current.tokens += lengths[i];
        current.indices.push(i);
    }
    if !current.indices.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_lands_in_exactly_one_batch() {
        let lengths = [5, 90, 12, 12, 300, 1, 64, 64, 7];
        let batches = token_budget_batches(&lengths, 128, 32);
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
    }

    #[test]
    fn batches_respect_the_budget_except_single_oversized_items() {
        let lengths = [5, 90, 12, 12, 300, 1, 64, 64, 7, 33, 33, 33];
        for b in token_budget_batches(&lengths, 128, 32) {
            assert!(
                b.max_len * b.indices.len() <= 128 || b.indices.len() == 1,
                "{b:?}"
            );
        }
    }

    #[test]
    fn longest_items_come_first_and_ties_keep_input_order() {
        let batches = token_budget_batches(&[3, 9, 9, 1], 1000, 2);
        assert_eq!(batches[0].indices, vec![1, 2]);
        assert_eq!(batches[1].indices, vec![0, 3]);
    }

    #[test]
    fn item_cap_applies() {
        let batches = token_budget_batches(&[1; 10], 1000, 4);
        assert_eq!(
            batches.iter().map(|b| b.indices.len()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
    }

    #[test]
    fn no_items_no_batches() {
        assert!(token_budget_batches(&[], 100, 8).is_empty());
    }
}
