//! Strided copies of bf16 tensors (kernels/layout.cu): the transposes,
//! slices, concats and window partitions the GPU executor materialises
//! (`lower` keeps every other one a view). The launcher, its CPU twin
//! (exact) and the GPU test.

use crate::cuda::kernels::layout::{COPY_STRIDED_BF16, CopyParams, MAX_RANK, THREADS};
use crate::cuda::{CudaError, LaunchShape, Region, Result, Stream};

/// A copy of the elements of `shape` from a source to a destination, each
/// with its element strides (one per axis, outermost first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strided {
    pub shape: Vec<usize>,
    pub src: Vec<usize>,
    pub dst: Vec<usize>,
}

/// One past the furthest element `strides` reach over `shape` (0 when empty).
pub fn extent(shape: &[usize], strides: &[usize]) -> usize {
    if shape.contains(&0) {
        return 0;
    }
    1 + shape
        .iter()
        .zip(strides)
        .map(|(&d, &s)| (d - 1) * s)
        .sum::<usize>()
}

/// Row-major (contiguous) strides of `shape`.
pub fn row_major(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        s[a] = s[a + 1] * shape[a + 1];
    }
    s
}

impl Strided {
    /// The same copy with axes of one dropped and each axis merged into the
    /// one outside it where both strides chain (`outer = inner * len`):
    /// fewer axes, the same elements in the same order.
    pub fn simplified(&self) -> Strided {
        let mut out = Strided {
            shape: vec![],
            src: vec![],
            dst: vec![],
        };
        for a in 0..self.shape.len() {
            let (d, s, t) = (self.shape[a], self.src[a], self.dst[a]);
            if d == 1 {
                continue;
            }
            if let (Some(&pd), Some(&ps), Some(&pt)) =
                (out.shape.last(), out.src.last(), out.dst.last())
                && ps == s * d
                && pt == t * d
            {
                let k = out.shape.len() - 1;
                (out.shape[k], out.src[k], out.dst[k]) = (pd * d, s, t);
                continue;
            }
            out.shape.push(d);
            out.src.push(s);
            out.dst.push(t);
        }
        out
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Copies `c` from `x` to `y` (both starting at their views' first
/// element); the regions must hold every element the strides reach, and
/// must not overlap.
pub fn copy_strided(s: &Stream, x: Region<u16>, y: Region<u16>, c: &Strided) -> Result<()> {
    let bad = |d: String| Err(CudaError::Invalid(format!("copy_strided: {d}")));
    if c.src.len() != c.shape.len() || c.dst.len() != c.shape.len() {
        return bad(format!("strides do not match the shape {:?}", c.shape));
    }
    if extent(&c.shape, &c.src) > x.len() || extent(&c.shape, &c.dst) > y.len() {
        return bad(format!(
            "{c:?} reaches past a source of {} or a destination of {}",
            x.len(),
            y.len()
        ));
    }
    let m = c.simplified();
    let n = m.numel();
    if n == 0 {
        return Ok(());
    }
    if m.shape.len() > MAX_RANK {
        return bad(format!(
            "{} axes after merging (at most {MAX_RANK})",
            m.shape.len()
        ));
    }
    if n >= 1 << 32 {
        return bad(format!("{n} elements in one copy (fewer than 2^32)"));
    }
    // Six axes, the leading ones of extent one (stride 0).
    let lead = MAX_RANK - m.shape.len();
    let mut p = CopyParams {
        n: n as u64,
        rank: MAX_RANK as u32,
        vec: 1,
        shape: [1; MAX_RANK],
        ..Default::default()
    };
    let u = |v: usize| {
        u32::try_from(v)
            .map_err(|_| CudaError::Invalid(format!("copy_strided: {v} does not fit 32 bits")))
    };
    for a in 0..m.shape.len() {
        (p.shape[lead + a], p.src[lead + a], p.dst[lead + a]) =
            (u(m.shape[a])?, u(m.src[a])?, u(m.dst[a])?);
    }
    // 16 bytes a thread where the innermost axis is contiguous on both sides.
    let last = MAX_RANK - 1;
    let vector = !m.shape.is_empty()
        && p.src[last] == 1
        && p.dst[last] == 1
        && p.shape[last].is_multiple_of(8)
        && p.src[..last]
            .iter()
            .chain(&p.dst[..last])
            .all(|s| s.is_multiple_of(8))
        && x.is_aligned(16)
        && y.is_aligned(16);
    if vector {
        p.vec = 8;
        p.shape[last] /= 8;
        (p.src[last], p.dst[last]) = (8, 8);
        p.n /= 8;
    }
    let shape = LaunchShape::per_item(p.n as usize, THREADS, "copy_strided")?;
    s.launch(&COPY_STRIDED_BF16, shape, (x, y, p))
}

/// CPU twin.
pub mod cpu {
    use super::*;

    /// `copy_strided` on the host: exact.
    pub fn copy_strided(x: &[u16], y: &mut [u16], c: &Strided) {
        let n = c.numel();
        let r = c.shape.len();
        let mut coord = vec![0usize; r];
        let (mut from, mut to) = (0usize, 0usize);
        for _ in 0..n {
            y[to] = x[from];
            // Next coordinate, innermost first, offsets kept incrementally.
            for a in (0..r).rev() {
                coord[a] += 1;
                from += c.src[a];
                to += c.dst[a];
                if coord[a] < c.shape[a] {
                    break;
                }
                from -= c.src[a] * c.shape[a];
                to -= c.dst[a] * c.shape[a];
                coord[a] = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::testing::gpu_or_skip;
    use crate::rng::Philox;

    /// The copies a transformer lowers to: ViT's qkv split transposed,
    /// Swin's window partition, a roll's slice, a class-token concat's
    /// columns, a 4-D NCHW map to tokens, and an odd-width slice (the
    /// element path).
    fn cases() -> Vec<(usize, usize, Strided)> {
        let perm = |shape: &[usize], p: &[usize]| -> Strided {
            // y = transpose(x, p): y's axis a is x's axis p[a].
            let xs = row_major(shape);
            let ys: Vec<usize> = p.iter().map(|&a| shape[a]).collect();
            Strided {
                src: p.iter().map(|&a| xs[a]).collect(),
                dst: row_major(&ys),
                shape: ys,
            }
        };
        vec![
            (3 * 17 * 96, 0, perm(&[3, 17, 3, 2, 16], &[2, 0, 3, 1, 4])),
            (
                2 * 8 * 8 * 32,
                0,
                perm(&[2, 2, 4, 2, 4, 32], &[0, 1, 3, 2, 4, 5]),
            ),
            (
                8 * 8 * 16,
                2 * 8 * 16,
                Strided {
                    shape: vec![6, 8, 16],
                    src: vec![128, 16, 1],
                    dst: vec![128, 16, 1],
                },
            ),
            (
                2 * 16 * 32,
                32,
                Strided {
                    shape: vec![2, 16, 32],
                    src: vec![512, 32, 1],
                    dst: vec![17 * 32, 32, 1],
                },
            ),
            (2 * 32 * 16, 0, perm(&[2, 16, 32], &[0, 2, 1])),
            (
                5 * 13,
                1,
                Strided {
                    shape: vec![5, 11],
                    src: vec![13, 1],
                    dst: vec![11, 1],
                },
            ),
        ]
    }

    #[test]
    fn twin_moves_what_the_strides_name() {
        // A 2 x 3 transpose by hand.
        let c = Strided {
            shape: vec![3, 2],
            src: vec![1, 3],
            dst: vec![2, 1],
        };
        let mut y = vec![0u16; 6];
        cpu::copy_strided(&[1, 2, 3, 4, 5, 6], &mut y, &c);
        assert_eq!(y, [1, 4, 2, 5, 3, 6]);
        // Merging keeps the copy: a row-major copy is one axis.
        let flat = Strided {
            shape: vec![2, 1, 3, 4],
            src: row_major(&[2, 1, 3, 4]),
            dst: row_major(&[2, 1, 3, 4]),
        };
        assert_eq!(flat.simplified().shape, [24]);
        for (_, _, c) in cases() {
            let m = c.simplified();
            let (mut a, mut b) = (vec![0u16; 1 << 14], vec![0u16; 1 << 14]);
            let x: Vec<u16> = (0..1u16 << 14).collect();
            cpu::copy_strided(&x, &mut a, &c);
            cpu::copy_strided(&x, &mut b, &m);
            assert_eq!(a, b, "{c:?} vs {m:?}");
        }
    }

    #[test]
    fn kernel_matches_cpu_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        for (len, at, c) in cases() {
            let mut r = Philox::new(len as u64, 2, 0, 0);
            let x: Vec<u16> = (0..len + at).map(|_| r.next_u32() as u16).collect();
            let dst_len = extent(&c.shape, &c.dst);
            let poison = vec![0x7FC1u16; dst_len];
            let mut want = poison.clone();
            cpu::copy_strided(&x[at..], &mut want, &c);
            let dx = s.to_device(&x).unwrap();
            let dy = s.to_device(&poison).unwrap();
            let xr = dx.region(&s, at..x.len()).unwrap();
            copy_strided(&s, xr, dy.region(&s, 0..dst_len).unwrap(), &c).unwrap();
            assert!(s.to_host(&dy).unwrap() == want, "{c:?} (exact)");
        }
        // A copy reaching past its destination is refused.
        let dx = s.to_device(&[0u16; 16]).unwrap();
        let c = Strided {
            shape: vec![4, 4],
            src: vec![4, 1],
            dst: vec![5, 1],
        };
        let e = copy_strided(
            &s,
            dx.region(&s, 0..16).unwrap(),
            dx.region(&s, 0..16).unwrap(),
            &c,
        )
        .unwrap_err();
        assert!(e.to_string().contains("reaches past"), "{e}");
    }
}
