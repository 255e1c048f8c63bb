//! Data movement into preallocated outputs: transpose and concat, shared
//! by the allocating ops in `layout` and the planned executor.

use rayon::prelude::*;

use crate::teacher::tensor::{View, numel};

/// The output shape of `perm` applied to `shape`, or why it is not a permutation.
pub fn transpose_shape(shape: &[usize], perm: &[usize]) -> Result<Vec<usize>, String> {
    let r = shape.len();
    let mut sorted = perm.to_vec();
    sorted.sort_unstable();
    if sorted != (0..r).collect::<Vec<_>>() {
        return Err(format!("Transpose perm {perm:?} for rank {r}"));
    }
    Ok(perm.iter().map(|&p| shape[p]).collect())
}

/// Transpose of any element type: each output row (all axes but the last)
/// gathered from its strided source.
pub fn transpose_into<T: Copy + Send + Sync>(
    x: &[T],
    shape: &[usize],
    perm: &[usize],
    out: &mut [T],
) -> Result<(), String> {
    let out_shape = transpose_shape(shape, perm)?;
    let r = shape.len();
    let n = numel(&out_shape);
    if out.len() != n || x.len() != n {
        return Err(format!("Transpose of {shape:?}: buffers do not match"));
    }
    if r == 0 || n == 0 {
        out.copy_from_slice(x);
        return Ok(());
    }
    let mut in_strides = vec![1usize; r];
    for i in (0..r - 1).rev() {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let inner = out_shape[r - 1];
    let inner_stride = strides[r - 1];
    // Source offset of the first element of output row `row` (all but the last axis).
    let base = |row: usize| {
        let (mut rem, mut off) = (row, 0usize);
        for d in (0..r - 1).rev() {
            off += (rem % out_shape[d]) * strides[d];
            rem /= out_shape[d];
        }
        off
    };
    out.par_chunks_mut(inner)
        .enumerate()
        .for_each(|(row, dst)| {
            let b = base(row);
            for (j, d) in dst.iter_mut().enumerate() {
                *d = x[b + j * inner_stride];
            }
        });
    Ok(())
}

/// Concat of float32 views along `axis` (shapes already checked by shape
/// inference; sizes are checked again here).
pub fn concat_into(xs: &[View], axis: usize, out: &mut [f32]) -> Result<(), String> {
    let first = xs.first().ok_or("Concat of nothing")?;
    let outer: usize = first.shape[..axis].iter().product();
    let inner: usize = first.shape[axis + 1..].iter().product();
    let total: usize = xs.iter().map(|x| x.data.len()).sum();
    if out.len() != total || xs.iter().any(|x| x.shape.len() != first.shape.len()) {
        return Err(format!("Concat along {axis}: sizes do not match"));
    }
    let mut at = 0;
    for o in 0..outer {
        for x in xs {
            let run = x.shape[axis] * inner;
            out[at..at + run].copy_from_slice(&x.data[o * run..(o + 1) * run]);
            at += run;
        }
    }
    Ok(())
}
