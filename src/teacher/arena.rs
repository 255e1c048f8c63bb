//! Where tensors live in one arena, from their lifetimes: shared by the
//! CPU and GPU executors' memory plans. Greedy by size (largest first), each
//! at the lowest aligned offset that nothing placed and live at an
//! overlapping time occupies.

use std::ops::Range;

/// `size` elements live from node `live.0` to node `live.1`, inclusive.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    pub size: usize,
    pub live: (usize, usize),
}

/// Each item's range (offsets multiples of `align`) and the arena's length.
pub fn place(items: &[Lifetime], align: usize) -> (Vec<Range<usize>>, usize) {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| {
        items[b]
            .size
            .cmp(&items[a].size)
            .then(items[a].live.0.cmp(&items[b].live.0))
    });
    let mut ranges = vec![0..0; items.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut total = 0;
    for &i in &order {
        let (s, e) = items[i].live;
        let size = items[i].size.next_multiple_of(align);
        let mut busy: Vec<Range<usize>> = placed
            .iter()
            .filter(|&&j| items[j].live.0 <= e && s <= items[j].live.1)
            .map(|&j| ranges[j].start..ranges[j].start + items[j].size.next_multiple_of(align))
            .collect();
        busy.sort_by_key(|r| r.start);
        let mut at = 0;
        for b in &busy {
            if b.start >= at + size {
                break;
            }
            at = at.max(b.end);
        }
        ranges[i] = at..at + items[i].size;
        total = total.max(at + size);
        placed.push(i);
    }
    (ranges, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(size: usize, live: (usize, usize)) -> Lifetime {
        Lifetime { size, live }
    }

    /// Values live at the same time never share memory; disjoint lifetimes do.
    #[test]
    fn placement_respects_lifetimes() {
        let items = vec![
            item(100, (0, 1)),
            item(50, (1, 2)),
            item(100, (2, 3)),
            item(30, (0, 3)),
            item(70, (3, 4)),
        ];
        let (r, total) = place(&items, 16);
        for i in 0..items.len() {
            for j in 0..i {
                let overlap_t =
                    items[i].live.0 <= items[j].live.1 && items[j].live.0 <= items[i].live.1;
                let overlap_m = r[i].start < r[j].end && r[j].start < r[i].end;
                assert!(!(overlap_t && overlap_m), "{i} and {j}: {r:?}");
            }
            assert_eq!(r[i].start % 16, 0);
        }
        // The two 100s never live together and share their space; the
        // peak (100 + 50 + 30 aligned = 208) bounds the total from below.
        assert_eq!(r[0], r[2]);
        assert!((208..=224).contains(&total), "{total}");
    }
}
