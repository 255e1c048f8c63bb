//! Fused attention (kernels/attention.cu): softmax(q kᵀ scale + bias) v
//! over bf16 views with their own strides, FlashAttention-2 style. The
//! launcher, the CPU twin (the kernel's tiles and order, dot products in
//! f64) and the kernel-vs-twin tests.

use super::conv::{bf16, f32_of};
use crate::cuda::kernels::attention::{
    AttnParams, BY_HEAD_DIM, THREADS, WIDE, block_rows, shared_bytes,
};
use crate::cuda::{CudaError, LaunchShape, Region, Result, Stream};

/// Element strides of a view's (batch, head, row) axes; the head dimension
/// is contiguous.
pub type Strides = [usize; 3];

/// What one attention computes: `batch` x `heads` independent problems of
/// `n_q` query rows over `n_kv` keys of dimension `d`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnDims {
    pub batch: usize,
    pub heads: usize,
    pub n_q: usize,
    pub n_kv: usize,
    pub d: usize,
    pub scale: f32,
    /// Images of the bias [bias_batch][heads][n_q][n_kv] (problem b reads
    /// image b % bias_batch); 0 without one.
    pub bias_batch: usize,
}

/// Keys a tile of the kernel (`ATT_BN`): the twin's online softmax steps.
const KEYS_PER_TILE: usize = 64;
/// `ATT_SUM_MAX`: the most a row's sum of probabilities over one tile may
/// be before its reference max moves (2^32).
const SUM_MAX: f32 = 4294967296.0;

impl AttnDims {
    /// The head dimension the kernel is compiled for: d rounded up to one
    /// of 16, 32, 64, 96, 128.
    pub fn padded_head_dim(&self) -> Option<usize> {
        BY_HEAD_DIM.iter().map(|e| e.0).find(|&p| p >= self.d)
    }

    /// One past the last element a view with `st` reaches.
    fn extent(&self, st: Strides, rows: usize) -> usize {
        super::layout::extent(
            &[self.batch, self.heads, rows, self.d],
            &[st[0], st[1], st[2], 1],
        )
    }

    /// Whether the launch takes the `_x2` entry (each K and V fragment
    /// feeds two m16 tiles: about 15% fewer instructions a product, by the
    /// static report): without a bias, at padded head dims 32 and 64, past
    /// 64 query rows, where blocks of 128 rows pad at most 1/8 more rows
    /// than blocks of 64 (197 tokens: 256 rows either way).
    fn wide(&self) -> bool {
        let rows = |b: usize| self.n_q.div_ceil(b) * b;
        self.bias_batch == 0
            && self.n_q > 64
            && rows(128) * 8 <= rows(64) * 9
            && self
                .padded_head_dim()
                .is_some_and(|p| WIDE.iter().any(|e| e.0 == p))
    }

    fn bias_len(&self) -> usize {
        self.bias_batch * self.heads * self.n_q * self.n_kv
    }

    /// Why the kernel cannot take these dims and strides, if it cannot.
    pub fn refusal(&self, strides: [Strides; 4]) -> Option<String> {
        let d = self.d;
        if [self.batch, self.heads, self.n_q, self.n_kv, d].contains(&0) {
            return Some("an empty dimension".into());
        }
        if !d.is_multiple_of(8) || self.padded_head_dim().is_none() {
            return Some(format!(
                "head dimension {d} (the kernel takes multiples of 8 up to 128)"
            ));
        }
        if strides.iter().flatten().any(|s| !s.is_multiple_of(8)) {
            return Some(format!("strides {strides:?} are not multiples of 8"));
        }
        if self.scale.is_nan() || self.scale <= 0.0 {
            return Some(format!("scale {}", self.scale));
        }
        None
    }
}

/// y = softmax(q kᵀ scale + bias) v; q, k, v and y start at their views'
/// first element, `st` their strides in that order.
pub fn attention(
    s: &Stream,
    qkv: [Region<u16>; 3],
    bias: Option<Region<f32>>,
    y: Region<u16>,
    st: [Strides; 4],
    dims: AttnDims,
) -> Result<()> {
    launch(s, qkv, bias, y, st, dims, dims.wide())
}

/// `attention` with the block shape chosen: `wide` takes the `_x2` entry
/// (32 query rows a warp), which exists without a bias at padded head dims
/// 32 and 64. The bits do not depend on it.
fn launch(
    s: &Stream,
    [q, k, v]: [Region<u16>; 3],
    bias: Option<Region<f32>>,
    y: Region<u16>,
    st: [Strides; 4],
    dims: AttnDims,
    wide: bool,
) -> Result<()> {
    let bad = |d: String| Err(CudaError::Invalid(format!("attention: {d}")));
    if let Some(why) = dims.refusal(st) {
        return bad(why);
    }
    let rows = [dims.n_q, dims.n_kv, dims.n_kv, dims.n_q];
    for (i, (r, len)) in [q.len(), k.len(), v.len(), y.len()]
        .iter()
        .enumerate()
        .map(|(i, l)| (i, (rows[i], l)))
    {
        if dims.extent(st[i], r) > *len {
            return bad(format!(
                "{} reaches past its region of {len}",
                ["q", "k", "v", "y"][i]
            ));
        }
    }
    if ![q, k, v].iter().all(|r| r.is_aligned(16)) || !y.is_aligned(4) {
        return bad("q, k and v must start on 16 bytes, y on 4".into());
    }
    let has_bias = dims.bias_batch > 0;
    match bias {
        Some(b) if has_bias && b.len() >= dims.bias_len() => {}
        None if !has_bias => {}
        _ => {
            return bad(format!(
                "the bias does not match bias_batch {}",
                dims.bias_batch
            ));
        }
    }
    let padded = dims.padded_head_dim().unwrap_or(128);
    let &(_, plain, biased) = BY_HEAD_DIM.iter().find(|e| e.0 == padded).expect("listed");
    let x2 = WIDE.iter().find(|e| e.0 == padded).map(|e| e.1);
    let kernel = match (has_bias, wide, x2) {
        (true, false, _) => biased,
        (false, false, _) => plain,
        (false, true, Some(x2)) => x2,
        _ => {
            return bad(format!(
                "no wide entry at head dim {padded}, bias {has_bias}"
            ));
        }
    };
    let u = |v: usize| {
        u32::try_from(v)
            .map_err(|_| CudaError::Invalid(format!("attention: {v} does not fit 32 bits")))
    };
    let strides = |x: Strides| -> Result<[u32; 3]> { Ok([u(x[0])?, u(x[1])?, u(x[2])?]) };
    let p = AttnParams {
        batch: u(dims.batch)?,
        heads: u(dims.heads)?,
        n_q: u(dims.n_q)?,
        n_kv: u(dims.n_kv)?,
        d: u(dims.d)?,
        bias_batch: u(dims.bias_batch)?,
        q: strides(st[0])?,
        k: strides(st[1])?,
        v: strides(st[2])?,
        y: strides(st[3])?,
        scale_log2: dims.scale * std::f32::consts::LOG2_E,
        unused: 0,
    };
    let blocks = dims.n_q.div_ceil(block_rows(wide)) * dims.heads * dims.batch;
    let shape = LaunchShape {
        grid: (u(blocks)?, 1, 1),
        block: (THREADS, 1, 1),
        shared_bytes: shared_bytes(padded, wide) as u32,
    };
    s.launch(
        kernel,
        shape,
        (q, k, v, bias.unwrap_or(Region::null()), y, p),
    )
}

/// CPU twin.
pub mod cpu {
    use super::*;

    /// `attention` on the host, the kernel's algorithm step for step:
    /// (y before its bf16 rounding, in [batch][heads][n_q][d] order, and
    /// per output the sum of bf16(p_j) |v_j| / l, for `Tol::Bf16Terms`).
    pub fn attention(
        [q, k, v]: [&[u16]; 3],
        bias: Option<&[f32]>,
        st: [Strides; 3],
        dims: AttnDims,
    ) -> (Vec<f32>, Vec<f32>) {
        let AttnDims {
            batch,
            heads,
            n_q,
            n_kv,
            d,
            ..
        } = dims;
        let scale_log2 = dims.scale * std::f32::consts::LOG2_E;
        let at = |x: &[u16], s: Strides, b: usize, h: usize, r: usize| {
            let o = b * s[0] + h * s[1] + r * s[2];
            x[o..o + d]
                .iter()
                .map(|&e| f32_of(e) as f64)
                .collect::<Vec<f64>>()
        };
        let mut y = Vec::with_capacity(batch * heads * n_q * d);
        let mut mag = Vec::with_capacity(y.capacity());
        for b in 0..batch {
            for h in 0..heads {
                let keys: Vec<Vec<f64>> = (0..n_kv).map(|j| at(k, st[1], b, h, j)).collect();
                let vals: Vec<Vec<f64>> = (0..n_kv).map(|j| at(v, st[2], b, h, j)).collect();
                for i in 0..n_q {
                    let qi = at(q, st[0], b, h, i);
                    let brow = bias.map(|bs| {
                        let o = (((b % dims.bias_batch) * heads + h) * n_q + i) * n_kv;
                        &bs[o..o + n_kv]
                    });
                    let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
                    let (mut o, mut om) = (vec![0f32; d], vec![0f32; d]);
                    for j0 in (0..n_kv).step_by(KEYS_PER_TILE) {
                        let js = j0..(j0 + KEYS_PER_TILE).min(n_kv);
                        // With a bias, scores in log2 units now (c' = 1);
                        // without, the scale rides in the exponent's fma.
                        let x: Vec<f32> = js
                            .clone()
                            .map(|j| {
                                let s =
                                    qi.iter().zip(&keys[j]).map(|(a, b)| a * b).sum::<f64>() as f32;
                                match brow {
                                    Some(br) => {
                                        s.mul_add(scale_log2, br[j] * std::f32::consts::LOG2_E)
                                    }
                                    None => s,
                                }
                            })
                            .collect();
                        let c = if brow.is_some() { 1.0 } else { scale_log2 };
                        let top = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) * c;
                        if j0 == 0 {
                            m = top;
                        }
                        let probs = |m: f32| {
                            let neg_m = if m == f32::NEG_INFINITY { 0.0 } else { -m };
                            let p: Vec<f32> =
                                x.iter().map(|&xj| xj.mul_add(c, neg_m).exp2()).collect();
                            let sum =
                                p.iter().map(|&pj| f32_of(bf16(pj)) as f64).sum::<f64>() as f32;
                            (p, sum)
                        };
                        let (mut p, mut sum) = probs(m);
                        // The rebase: m moves to the tile's max when the
                        // tile's sum passes SUM_MAX (or m is still -inf).
                        let sum_max = if m == f32::NEG_INFINITY {
                            -1.0
                        } else {
                            SUM_MAX
                        };
                        // Not `sum <= sum_max`: a NaN or infinite sum rebases.
                        let within = sum.partial_cmp(&sum_max).is_some_and(|o| o.is_le());
                        if j0 > 0 && !within {
                            let m_new = m.max(top);
                            let alpha = (m - m_new).exp2();
                            m = m_new;
                            l *= alpha;
                            o.iter_mut().for_each(|e| *e *= alpha);
                            om.iter_mut().for_each(|e| *e *= alpha);
                            (p, sum) = probs(m);
                        }
                        l += sum;
                        for col in 0..d {
                            let (mut acc, mut a_mag) = (0f64, 0f64);
                            for (jj, j) in js.clone().enumerate() {
                                let pb = f32_of(bf16(p[jj])) as f64;
                                acc += pb * vals[j][col];
                                a_mag += pb * vals[j][col].abs();
                            }
                            o[col] += acc as f32;
                            om[col] += a_mag as f32;
                        }
                    }
                    let inv = 1.0 / l;
                    y.extend(o.iter().map(|&e| e * inv));
                    mag.extend(om.iter().map(|&e| e * inv));
                }
            }
        }
        (y, mag)
    }

    /// `attention`'s result rounded to bf16 and stored at `ys` strides into `y`.
    pub fn attention_into(
        qkv: [&[u16]; 3],
        bias: Option<&[f32]>,
        st: [Strides; 4],
        dims: AttnDims,
        y: &mut [u16],
    ) {
        let (out, _) = attention(qkv, bias, [st[0], st[1], st[2]], dims);
        let ys = st[3];
        for (r, row) in out.chunks(dims.d).enumerate() {
            let (i, bh) = (r % dims.n_q, r / dims.n_q);
            let (h, b) = (bh % dims.heads, bh / dims.heads);
            let o = b * ys[0] + h * ys[1] + i * ys[2];
            for (dst, &v) in y[o..o + dims.d].iter_mut().zip(row) {
                *dst = bf16(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::DevBuf;
    use crate::cuda::testing::{Tol, gpu_or_skip};
    use crate::rng::Philox;
    use crate::teacher::tensor::Tensor;

    /// A case: q, k, v as the views of one qkv projection [b][n][3][h][d]
    /// (ViT's), the output tokens-major [b][n][h][d].
    struct Case {
        dims: AttnDims,
        qkv: Vec<u16>,
        bias: Option<Vec<f32>>,
    }

    impl Case {
        fn new(
            batch: usize,
            heads: usize,
            n: usize,
            d: usize,
            bias_batch: usize,
            seed: u64,
        ) -> Case {
            let mut r = Philox::new(seed, 7, 0, 0);
            let mut u = |s: f32| (r.uniform_f32() - 0.5) * 2.0 * s;
            let qkv = (0..batch * n * 3 * heads * d)
                .map(|_| bf16(u(2.0)))
                .collect();
            // Swin's bias: a relative-position term and, for shifted
            // windows, -100 between tokens of different regions.
            let bias = (bias_batch > 0).then(|| {
                (0..bias_batch * heads * n * n)
                    .map(|i| {
                        u(1.0)
                            + if (i / n + i).is_multiple_of(7) {
                                -100.0
                            } else {
                                0.0
                            }
                    })
                    .collect()
            });
            Case {
                dims: AttnDims {
                    batch,
                    heads,
                    n_q: n,
                    n_kv: n,
                    d,
                    scale: 1.0 / (d as f32).sqrt(),
                    bias_batch,
                },
                qkv,
                bias,
            }
        }

        /// Keys of tile t (64 keys a tile) scaled by 1 + 8t, so that every
        /// later tile's scores pass the reference of the one before by far
        /// more than the lazy margin: every row rebases on every tile.
        fn growing_keys(mut self) -> Case {
            let AttnDims {
                batch,
                heads,
                n_q: n,
                d,
                ..
            } = self.dims;
            for b in 0..batch {
                for j in 0..n {
                    let o = (b * n + j) * 3 * heads * d + heads * d;
                    let f = 1.0 + 8.0 * (j / KEYS_PER_TILE) as f32;
                    for e in &mut self.qkv[o..o + heads * d] {
                        *e = bf16(f32_of(*e) * f);
                    }
                }
            }
            self
        }

        /// q, k, v, y strides.
        fn strides(&self) -> [Strides; 4] {
            let AttnDims {
                heads: h,
                n_q: n,
                d,
                ..
            } = self.dims;
            let qkv = [n * 3 * h * d, d, 3 * h * d];
            [qkv, qkv, qkv, [n * h * d, d, h * d]]
        }

        fn views(&self) -> [&[u16]; 3] {
            let hd = self.dims.heads * self.dims.d;
            [&self.qkv[..], &self.qkv[hd..], &self.qkv[2 * hd..]]
        }

        fn y_len(&self) -> usize {
            let AttnDims {
                batch,
                heads,
                n_q,
                d,
                ..
            } = self.dims;
            batch * n_q * heads * d
        }

        fn twin(&self) -> (Vec<f32>, Vec<f32>) {
            let st = self.strides();
            cpu::attention(
                self.views(),
                self.bias.as_deref(),
                [st[0], st[1], st[2]],
                self.dims,
            )
        }

        /// The kernel's output, in the twin's [b][h][i][d] order.
        fn gpu(&self, s: &Stream) -> Vec<f32> {
            self.gpu_shaped(s, self.dims.wide())
        }

        /// `gpu` with the block shape chosen (`launch`'s `wide`).
        fn gpu_shaped(&self, s: &Stream, wide: bool) -> Vec<f32> {
            let hd = self.dims.heads * self.dims.d;
            let dq = s.to_device(&self.qkv).unwrap();
            let dy = s.to_device(&vec![0x7FC1u16; self.y_len()]).unwrap();
            let db = self.bias.as_ref().map(|b| s.to_device(b).unwrap());
            let r = |b: &DevBuf<u16>, at: usize| b.region(s, at..b.len()).unwrap();
            launch(
                s,
                [r(&dq, 0), r(&dq, hd), r(&dq, 2 * hd)],
                db.as_ref().map(|b| b.region(s, 0..b.len()).unwrap()),
                r(&dy, 0),
                self.strides(),
                self.dims,
                wide,
            )
            .unwrap();
            let y = s.to_host(&dy).unwrap();
            let AttnDims {
                batch,
                heads,
                n_q,
                d,
                ..
            } = self.dims;
            let mut out = Vec::with_capacity(y.len());
            for b in 0..batch {
                for h in 0..heads {
                    for i in 0..n_q {
                        let o = ((b * n_q + i) * heads + h) * d;
                        out.extend(y[o..o + d].iter().map(|&e| f32_of(e)));
                    }
                }
            }
            out
        }
    }

    /// ViT-B/16's 197 tokens at head dim 64 (fewer heads), DeiT-S's 384 /
    /// 6 = 64, head dims 32, 96 and 128 at lengths not a multiple of 64,
    /// Swin-T's 49-token windows at head dim 32 with a bias over 4 windows,
    /// a head dim of 8 (padded to 16) with a bias, one key; keys that grow
    /// tile by tile (every tile rebases), at both block shapes of d 64.
    fn cases() -> Vec<Case> {
        vec![
            Case::new(2, 2, 197, 64, 0, 1),
            Case::new(1, 2, 197, 64, 0, 8).growing_keys(),
            Case::new(1, 2, 64, 64, 0, 9).growing_keys(),
            Case::new(1, 1, 160, 96, 0, 10).growing_keys(),
            Case::new(1, 3, 50, 32, 0, 2),
            Case::new(1, 2, 70, 96, 0, 3),
            Case::new(1, 1, 65, 128, 0, 4),
            Case::new(8, 3, 49, 32, 4, 5),
            Case::new(4, 2, 16, 8, 2, 6),
            Case::new(3, 1, 1, 16, 0, 7),
        ]
    }

    /// The twin against the CPU executor's attention (softmax in f32, no
    /// bf16 probabilities): within the probabilities' bf16 rounding.
    #[test]
    fn twin_tracks_the_cpu_executor() {
        for c in cases() {
            let (got, mag) = c.twin();
            let AttnDims {
                batch: b,
                heads: h,
                n_q: n,
                d,
                ..
            } = c.dims;
            let st = c.strides();
            let gather = |v: &[u16]| -> Tensor {
                let mut t = Vec::with_capacity(b * h * n * d);
                for bi in 0..b {
                    for hi in 0..h {
                        for i in 0..n {
                            let o = bi * st[0][0] + hi * st[0][1] + i * st[0][2];
                            t.extend(v[o..o + d].iter().map(|&e| f32_of(e)));
                        }
                    }
                }
                Tensor::f32(vec![b, h, n, d], t)
            };
            let [q, k, v] = c.views().map(gather);
            let bias = c.bias.as_ref().map(|bs| {
                // The executor broadcasts [bias_batch, h, n, n] only when
                // it is 1 or b; tile it to b here.
                let per = h * n * n;
                let full: Vec<f32> = (0..b)
                    .flat_map(|bi| bs[(bi % c.dims.bias_batch) * per..][..per].to_vec())
                    .collect();
                Tensor::f32(vec![b, h, n, n], full)
            });
            let want =
                crate::teacher::cpu::attention::attention(&q, &k, &v, bias.as_ref(), c.dims.scale)
                    .unwrap();
            let want = want.to_f32_vec();
            let report = Tol::Bf16Terms
                .check(&got, &want, &mag)
                .unwrap_or_else(|e| panic!("{:?}: {e}", c.dims));
            println!("twin vs executor {:?}: {report}", c.dims);
        }
    }

    #[test]
    fn kernel_matches_cpu_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        for c in cases() {
            let (want, mag) = c.twin();
            let got = c.gpu(&s);
            let report = Tol::Bf16Terms
                .check(&got, &want, &mag)
                .unwrap_or_else(|e| panic!("{:?}: {e}", c.dims));
            println!("attention {:?}: {report}", c.dims);
        }
    }

    /// An image's output is the same bits whatever images share its launch.
    #[test]
    fn results_do_not_depend_on_the_batch() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        let all = Case::new(3, 2, 197, 64, 0, 11);
        let mut last = Case::new(1, 2, 197, 64, 0, 11);
        let per = all.qkv.len() / 3;
        last.qkv = all.qkv[2 * per..].to_vec();
        let (a, l) = (all.gpu(&s), last.gpu(&s));
        assert!(a[2 * l.len()..] == l[..], "the last image alone");
    }

    /// The 128-row blocks (`_x2`) give the same bits as the 64-row ones.
    #[test]
    fn block_shape_does_not_change_the_bits() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        for c in [
            Case::new(2, 2, 197, 64, 0, 12),
            Case::new(1, 2, 197, 64, 0, 13).growing_keys(),
            Case::new(1, 3, 100, 32, 0, 14),
        ] {
            assert!(c.dims.wide(), "{:?} takes the _x2 entry", c.dims);
            let (wide, narrow) = (c.gpu_shaped(&s, true), c.gpu_shaped(&s, false));
            assert!(
                wide == narrow,
                "{:?}: _x2 and the 64-row blocks differ",
                c.dims
            );
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        let c = Case::new(1, 1, 4, 12, 0, 1);
        assert!(
            c.dims
                .refusal(c.strides())
                .unwrap()
                .contains("head dimension 12")
        );
        let mut d = Case::new(1, 1, 4, 256, 0, 1).dims;
        assert!(d.refusal([[0; 3]; 4]).unwrap().contains("256"));
        d.d = 64;
        assert!(
            d.refusal([[0, 0, 4]; 4])
                .unwrap()
                .contains("multiples of 8")
        );
    }
}
