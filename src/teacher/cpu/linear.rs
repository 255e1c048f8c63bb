//! Gemm (fully connected layers) and MatMul (batched, broadcasting).

use rayon::prelude::*;

use super::elementwise::broadcast_shape;
use super::gemm::matmul;
use crate::teacher::tensor::{Tensor, View, numel};

/// How many rows of a [rows, K] x [K, N] product one call of the GEMM takes:
/// the rows of one image (`batch` images in all), or one row when they do
/// not split evenly by image. A product of a fixed shape sums every output
/// element in a fixed order; the same rows in products of other heights do
/// not: the gemm crate takes a matrix-vector kernel for a one-row product
/// and its blocking follows the sizes, so a batch-sized product would make
/// the logits, and the stored records, depend on `--batch-size`. Per image,
/// each element's order is a function of the model alone.
pub fn rows_per_product(rows: usize, batch: usize) -> usize {
    if batch > 0 && rows.is_multiple_of(batch) {
        (rows / batch).max(1)
    } else {
        1
    }
}

/// ONNX Gemm: `alpha·A'·B' + beta·C` with A' [M,K], B' [K,N], C broadcast to
/// [M,N]; `batch`: the images the graph runs (see `rows_per_product`).
#[allow(clippy::too_many_arguments)]
pub fn gemm_op(
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
    alpha: f32,
    beta: f32,
    ta: bool,
    tb: bool,
    batch: usize,
) -> Result<Tensor, String> {
    let (av, bv) = (a.to_f32_vec(), b.to_f32_vec());
    let cv = c.map(|c| c.to_f32_vec());
    let (m, n) = gemm_dims(&a.shape, &b.shape, ta, tb)?;
    let mut out = vec![0f32; m * n];
    gemm_into(
        View::new(&av, &a.shape),
        View::new(&bv, &b.shape),
        c.zip(cv.as_deref()).map(|(c, v)| View::new(v, &c.shape)),
        alpha,
        beta,
        ta,
        tb,
        batch,
        &mut out,
    )?;
    Ok(Tensor::f32(vec![m, n], out))
}

/// Gemm's [M, N] (or why the operands do not fit).
pub fn gemm_dims(a: &[usize], b: &[usize], ta: bool, tb: bool) -> Result<(usize, usize), String> {
    if a.len() != 2 || b.len() != 2 {
        return Err(format!("Gemm of {a:?} and {b:?}"));
    }
    let (m, k) = if ta { (a[1], a[0]) } else { (a[0], a[1]) };
    let (k2, n) = if tb { (b[1], b[0]) } else { (b[0], b[1]) };
    if k != k2 {
        return Err(format!("Gemm inner sizes {k} and {k2} differ"));
    }
    Ok((m, n))
}

/// `gemm_op` writing into `out` [M, N].
#[allow(clippy::too_many_arguments)]
pub fn gemm_into(
    a: View,
    b: View,
    c: Option<View>,
    alpha: f32,
    beta: f32,
    ta: bool,
    tb: bool,
    batch: usize,
    out: &mut [f32],
) -> Result<(), String> {
    let (m, n) = gemm_dims(a.shape, b.shape, ta, tb)?;
    let k = if ta { a.shape[0] } else { a.shape[1] };
    let (av, bv) = (a.data, b.data);
    if out.len() != m * n {
        return Err(format!("Gemm output is not [{m}, {n}]"));
    }
    // One product per image, the images in parallel.
    let rows = rows_per_product(m, batch);
    out.par_chunks_mut((rows * n).max(1))
        .enumerate()
        .for_each(|(blk, dst)| {
            let r0 = blk * rows;
            let mr = dst.len() / n.max(1);
            if ta {
                // A' rows r0.. are columns of A: gather them.
                let sub: Vec<f32> = (0..k)
                    .flat_map(|p| (r0..r0 + mr).map(move |i| (p, i)))
                    .map(|(p, i)| av[p * m + i])
                    .collect();
                matmul(mr, n, k, &sub, true, bv, tb, dst, false);
            } else {
                matmul(
                    mr,
                    n,
                    k,
                    &av[r0 * k..(r0 + mr) * k],
                    false,
                    bv,
                    tb,
                    dst,
                    false,
                );
            }
        });
    if alpha != 1.0 {
        out.iter_mut().for_each(|v| *v *= alpha);
    }
    if let Some(c) = c {
        let shape = broadcast_shape(&[m, n], c.shape)?;
        if shape != [m, n] {
            return Err(format!(
                "Gemm C {:?} does not broadcast to [{m}, {n}]",
                c.shape
            ));
        }
        let cv = c.data;
        let (cr, cc) = match c.shape.len() {
            0 => (1, 1),
            1 => (1, c.shape[0]),
            _ => (c.shape[0], c.shape[1]),
        };
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] += beta * cv[(i % cr) * cc + j % cc];
            }
        }
    }
    Ok(())
}

/// numpy matmul's shape rules: 1-D operands promoted, batch dimensions broadcast.
pub struct MatMulDims {
    /// Operand shapes after promotion to at least 2-D.
    pub a: Vec<usize>,
    pub b: Vec<usize>,
    pub batch: Vec<usize>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// The output shape (promoted axes dropped again).
    pub out: Vec<usize>,
}

pub fn matmul_dims(a: &[usize], b: &[usize]) -> Result<MatMulDims, String> {
    let (mut ash, mut bsh) = (a.to_vec(), b.to_vec());
    let (a1, b1) = (ash.len() == 1, bsh.len() == 1);
    if a1 {
        ash.insert(0, 1);
    }
    if b1 {
        bsh.push(1);
    }
    if ash.len() < 2 || bsh.len() < 2 {
        return Err(format!("MatMul of {a:?} and {b:?}"));
    }
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != k2 {
        return Err(format!(
            "MatMul inner sizes {k} and {k2} differ ({a:?} · {b:?})"
        ));
    }
    let batch = broadcast_shape(&ash[..ash.len() - 2], &bsh[..bsh.len() - 2])?;
    let mut out = batch.clone();
    if !a1 {
        out.push(m);
    }
    if !b1 {
        out.push(n);
    }
    Ok(MatMulDims {
        a: ash,
        b: bsh,
        batch,
        m,
        k,
        n,
        out,
    })
}

/// numpy matmul; with a fused `bias` (a constant over the last axis, added
/// in the product); `batch` as for `gemm_op`.
pub fn matmul_op(
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    batch: usize,
) -> Result<Tensor, String> {
    let (av, bv) = (a.to_f32_vec(), b.to_f32_vec());
    let bias_v = bias.map(|t| t.to_f32_vec());
    if let Some(t) = bias
        && b.shape.len() == 2
        && t.len() != b.shape[1]
    {
        return Err(format!(
            "MatMul bias of {:?} for {} columns",
            t.shape, b.shape[1]
        ));
    }
    let dims = matmul_dims(&a.shape, &b.shape)?;
    let mut out = vec![0f32; numel(&dims.out)];
    matmul_into(
        View {
            data: &av,
            shape: &a.shape,
        },
        View {
            data: &bv,
            shape: &b.shape,
        },
        bias_v.as_deref(),
        batch,
        &mut out,
    )?;
    Ok(Tensor::f32(dims.out, out))
}

/// `matmul_op` writing into `out` (every element is written).
pub fn matmul_into(
    a: View,
    b: View,
    bias: Option<&[f32]>,
    images: usize,
    out: &mut [f32],
) -> Result<(), String> {
    let MatMulDims {
        a: ash,
        b: bsh,
        batch,
        m,
        k,
        n,
        out: shape,
    } = matmul_dims(a.shape, b.shape)?;
    if out.len() != numel(&shape) {
        return Err(format!("MatMul output is not {shape:?}"));
    }
    let nb = numel(&batch);
    let idx = |sh: &[usize], bi: usize| -> usize {
        // Broadcast batch index bi of `batch` into the operand's batch dims.
        let mut rem = bi;
        let mut off = 0;
        let mut stride = 1;
        let lead = sh.len() - 2;
        for d in (0..batch.len()).rev() {
            let i = rem % batch[d];
            rem /= batch[d];
            let od = d as isize - (batch.len() as isize - lead as isize);
            if od >= 0 {
                let dim = sh[od as usize];
                off += if dim == 1 { 0 } else { i } * stride;
                stride *= dim;
            }
        }
        off
    };
    let (av, bv) = (a.data, b.data);
    if b.shape.len() == 2 {
        // A plain weight matrix: the rows of every image, one product each.
        let rows = rows_per_product(nb * m, images);
        match bias {
            Some(t) if t.len() == n => out.chunks_mut(n.max(1)).for_each(|r| r.copy_from_slice(t)),
            Some(t) => return Err(format!("MatMul bias of {} values for {n} columns", t.len())),
            None => {}
        }
        out.par_chunks_mut((rows * n).max(1))
            .enumerate()
            .for_each(|(blk, dst)| {
                let (r0, mr) = (blk * rows, dst.len() / n.max(1));
                let a_rows = &av[r0 * k..(r0 + mr) * k];
                matmul(mr, n, k, a_rows, false, bv, false, dst, bias.is_some());
            });
        return Ok(());
    }
    if bias.is_some() {
        return Err("a fused MatMul bias needs a 2-D weight".into());
    }
    out.par_chunks_mut((m * n).max(1))
        .enumerate()
        .for_each(|(bi, dst)| {
            let ao = idx(&ash, bi) * m * k;
            let bo = idx(&bsh, bi) * k * n;
            matmul(
                m,
                n,
                k,
                &av[ao..ao + m * k],
                false,
                &bv[bo..bo + k * n],
                false,
                dst,
                false,
            );
        });
    Ok(())
}
