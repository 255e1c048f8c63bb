//! Views: where a value's elements sit in the arena. A value computed by a
//! step owns a region (its root); a Transpose, Reshape, Slice, Split,
//! Squeeze, Gather of one index or Expand is a view of its input's root,
//! an offset and one element stride per logical axis, as in PyTorch. A
//! kernel that needs its input in a given layout gets a view that has it,
//! or a strided copy (`layout.cu`) into one that does.

use crate::teacher::graph::ValueId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub root: ValueId,
    /// Elements from the root's first.
    pub offset: usize,
    pub strides: Vec<usize>,
}

pub use super::super::layout::row_major;

/// NCHW logical axes stored NHWC with `c` channels a pixel (the model's
/// input may hold more channels than it has: `stored_input_channels`).
pub fn nhwc(shape: &[usize; 4], c: usize) -> Vec<usize> {
    let [_, _, h, w] = *shape;
    vec![h * w * c, 1, w * c, c]
}

/// The axes of extent above 1 from outermost to innermost in memory.
pub fn memory_order(shape: &[usize], strides: &[usize]) -> Vec<usize> {
    let mut axes: Vec<usize> = (0..shape.len()).filter(|&a| shape[a] > 1).collect();
    // Stable: equal strides (impossible in a dense view) keep axis order.
    axes.sort_by(|&a, &b| strides[b].cmp(&strides[a]));
    axes
}

/// Whether the view covers exactly its `numel` elements from its start:
/// some order of its axes is row-major.
pub fn is_dense(shape: &[usize], strides: &[usize]) -> bool {
    let mut expect = 1;
    for &a in memory_order(shape, strides).iter().rev() {
        if strides[a] != expect {
            return false;
        }
        expect *= shape[a];
    }
    true
}

/// Dense strides for `shape` with its axes in memory in the order `like`
/// has them (a view of the same rank); row-major where `like` has axes of 1.
pub fn dense_like(shape: &[usize], like_shape: &[usize], like: &[usize]) -> Vec<usize> {
    let ordered = memory_order(like_shape, like);
    // An axis `like` does not order (extent 1 there) goes just outside the
    // first ordered axis after it, so a row-major `like` gives row-major.
    let mut free = (0..shape.len()).filter(|a| !ordered.contains(a)).peekable();
    let mut order = Vec::with_capacity(shape.len());
    for &o in &ordered {
        while let Some(u) = free.next_if(|&u| u < o) {
            order.push(u);
        }
        order.push(o);
    }
    order.extend(free);
    let mut s = vec![0; shape.len()];
    let mut expect = 1;
    for &a in order.iter().rev() {
        s[a] = expect;
        expect *= shape[a];
    }
    s
}

/// The strides of `new` as a view of a tensor of `shape` with `strides`
/// (ONNX Reshape and its kin on a view), when its elements in row-major
/// order are the same: PyTorch's rule for `view`. None when a copy is needed.
pub fn reshaped(shape: &[usize], strides: &[usize], new: &[usize]) -> Option<Vec<usize>> {
    if shape.iter().product::<usize>() != new.iter().product::<usize>() {
        return None;
    }
    if shape.contains(&0) || shape.is_empty() {
        return Some(row_major(new));
    }
    let mut out = vec![0; new.len()];
    let mut view_d = new.len() as isize - 1;
    let mut chunk_base = *strides.last().unwrap_or(&1);
    let (mut tensor_numel, mut view_numel) = (1usize, 1usize);
    for d in (0..shape.len()).rev() {
        tensor_numel *= shape[d];
        // A chunk of axes that are contiguous with each other ends at d.
        if d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base) {
            while view_d >= 0 && (view_numel < tensor_numel || new[view_d as usize] == 1) {
                out[view_d as usize] = view_numel * chunk_base;
                view_numel *= new[view_d as usize];
                view_d -= 1;
            }
            if view_numel != tensor_numel {
                return None;
            }
            if d > 0 {
                chunk_base = strides[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    (view_d == -1).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_follow_pytorch() {
        // An NCHW map stored NHWC flattened over H, W: [N, C, HW] with C innermost.
        let s = nhwc(&[2, 32, 4, 4], 32);
        assert_eq!(
            reshaped(&[2, 32, 4, 4], &s, &[2, 32, 16]),
            Some(vec![512, 1, 32])
        );
        // ... but not over C, H (not adjacent in memory).
        assert_eq!(reshaped(&[2, 32, 4, 4], &s, &[2, 128, 4]), None);
        // A row-major [1, 17, 96] split into heads.
        assert_eq!(
            reshaped(&[1, 17, 96], &[1632, 96, 1], &[1, 17, 3, 2, 16]),
            Some(vec![1632, 96, 32, 16, 1])
        );
        // Swin's window partition transposed cannot merge without a copy.
        let t = [1024, 512, 64, 128, 16, 1]; // [1, 2, 4, 2, 4, 16] axes 2, 3 swapped
        assert_eq!(reshaped(&[1, 2, 2, 4, 4, 16], &t, &[4, 16, 16]), None);
        assert!(is_dense(&[1, 2, 2, 4, 4, 16], &t));
        assert!(!is_dense(&[2, 3], &[4, 1]));
        assert!(is_dense(&[2, 1, 3], &[3, 99, 1]));
        assert_eq!(memory_order(&[2, 3, 4], &[1, 8, 2]), [1, 2, 0]);
        assert_eq!(dense_like(&[2, 3, 4], &[2, 3, 4], &[1, 8, 2]), [1, 8, 2]);
        assert_eq!(dense_like(&[2, 6], &[2, 1], &[1, 1]), [6, 1]);
        // Squeezing and unsqueezing axes of one.
        assert_eq!(reshaped(&[4, 1, 8], &[8, 8, 1], &[4, 8]), Some(vec![8, 1]));
        assert_eq!(reshaped(&[4, 8], &[1, 4], &[4, 1, 8]), Some(vec![1, 32, 4]));
    }
}
