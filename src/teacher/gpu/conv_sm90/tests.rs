//! The sm_90a GEMM against the convolution's CPU twin, under the stand-in
//! without a GPU (which reports compute capability 9.0). Not under
//! `DR_EMU_RACECHECK=1`: its race detector knows `__syncthreads` and warp
//! collectives but not mbarriers, so the ring's stage hand-offs (ordered
//! only by the full/empty mbarriers) would read as races; the schedules
//! (lockstep, `DR_EMU_SCHEDULE=warp-ahead`, reversed blocks) and the TMA's
//! in-flight checks are what test the ordering.

use super::*;
use crate::cuda::kernels::conv_sm90::ALL;
use crate::cuda::testing::{Tol, gpu_or_skip};
use crate::cuda::{DevBuf, Gpu};
use crate::teacher::gpu::conv::cpu;
use crate::teacher::gpu::conv::f32_of;
use crate::teacher::gpu::conv::tests::{Case, attrs, build};
use crate::teacher::graph::Activation;

/// (name, x NCHW, Cout, residual, activation code): M not a multiple of
/// 128 (and M = 1), K from 40 to 2048 (multiples of 64 and not), Cout 128
/// (one narrow tile), 384 (three), 256/512 (both tiles) and 96, 192, 1000
/// (a ragged last tile), every epilogue entry point and every activation
/// of `_any`.
type Sm90Case = (&'static str, [usize; 4], usize, bool, u32);

fn cases() -> Vec<Sm90Case> {
    vec![
        ("K 64, M 77, none", [1, 64, 7, 11], 256, false, 0),
        ("K 2048, M 150, relu", [1, 2048, 5, 30], 256, false, 1),
        (
            "K 256, M 126, relu + residual",
            [2, 256, 9, 7],
            512,
            true,
            1,
        ),
        (
            "K 128, M 200, GELU erf + residual",
            [1, 128, 10, 20],
            384,
            true,
            5,
        ),
        ("K 192, M 60, SiLU", [3, 192, 4, 5], 256, false, 2),
        ("K 64, M 33, HardSwish", [1, 64, 3, 11], 128, false, 3),
        ("K 320, M 9, sigmoid", [1, 320, 3, 3], 128, false, 4),
        ("K 64, M 130, GELU tanh", [2, 64, 5, 13], 256, false, 6),
        (
            "K 512, M 1 (fc at batch 1), residual",
            [1, 512, 1, 1],
            256,
            true,
            0,
        ),
        // Ragged K (the TMA's zero columns past K and K_pad) and ragged N
        // (zero weight rows, the epilogue's column bound).
        ("K 96, N 96, M 84, relu", [2, 96, 6, 7], 96, false, 1),
        (
            "K 40 (packed 64), N 192, M 45, relu + residual",
            [1, 40, 5, 9],
            192,
            true,
            1,
        ),
        (
            "K 200, N 1000, M 21, GELU erf",
            [1, 200, 3, 7],
            1000,
            false,
            5,
        ),
    ]
}

fn case(xs: [usize; 4], cout: usize, res: bool, act: u32, seed: u64) -> Case {
    let a = attrs(1, 1, 0, 1, 1, Activation::None);
    build(&a, xs, cout, res, act, seed)
}

struct Dev {
    x: DevBuf<u16>,
    w: DevBuf<u16>,
    bias: DevBuf<f32>,
    residual: Option<DevBuf<u16>>,
}

fn upload(s: &Stream, c: &Case) -> Dev {
    Dev {
        x: s.to_device(&c.x).unwrap(),
        w: s.to_device(&c.w).unwrap(),
        bias: s.to_device(&c.bias).unwrap(),
        residual: c.residual.as_deref().map(|r| s.to_device(r).unwrap()),
    }
}

/// Runs tile `bn` on `c` into a NaN-poisoned output and returns its bits.
fn run(s: &Stream, c: &Case, d: &Dev, bn: u32) -> Result<Vec<u16>> {
    let len = c.p.m as usize * c.p.cout as usize;
    let y = s.to_device(&vec![0x7FC1u16; len])?;
    let io = ConvIo {
        x: d.x.region(s, 0..d.x.len())?,
        w: d.w.region(s, 0..d.w.len())?,
        bias: d.bias.region(s, 0..d.bias.len())?,
        residual: d
            .residual
            .as_ref()
            .map(|r| r.region(s, 0..r.len()))
            .transpose()?,
        y: y.region(s, 0..len)?,
        workspace: None,
    };
    conv1x1_sm90(s, &c.p, bn, io)?;
    s.to_host(&y)
}

fn tiles(p: &ConvParams) -> Vec<u32> {
    if tile_n(p) == 256 {
        vec![128, 256]
    } else {
        vec![128]
    }
}

fn sm90(gpu: &Gpu) -> bool {
    if gpu.info().compute_capability != (9, 0) {
        println!("skipped: {} is not compute capability 9.0", gpu.info().name);
        return false;
    }
    true
}

#[test]
fn kernel_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip() else { return };
    if !sm90(&gpu) {
        return;
    }
    let s = gpu.stream(0);
    let mut used = std::collections::BTreeSet::new();
    for (i, (name, xs, cout, res, act)) in cases().into_iter().enumerate() {
        let c = case(xs, cout, res, act, 300 + i as u64);
        assert_eq!(refusal(&c.p), None, "{name}");
        let (want, mag) = cpu::conv2d(&c.p, &c.x, &c.w, &c.bias, c.residual.as_deref());
        let d = upload(&s, &c);
        let mut first: Option<Vec<u16>> = None;
        for bn in tiles(&c.p) {
            used.insert(kernel(&c.p, bn).name);
            let bits = run(&s, &c, &d, bn).unwrap();
            // The tiles are candidates of one layer (conv::wgmma_variants): the same bits.
            match &first {
                Some(f) => assert!(*f == bits, "{name}: tile {bn} differs from tile 128"),
                None => first = Some(bits.clone()),
            }
            let got: Vec<f32> = bits.iter().map(|&b| f32_of(b)).collect();
            let report = Tol::Bf16Accum { k: c.p.k as usize }
                .check(&got, &want, &mag)
                .unwrap_or_else(|e| panic!("{name} ({}): {e}", kernel(&c.p, bn).name));
            println!("{name} ({}): {report}", kernel(&c.p, bn).name);
        }
    }
    let gemm = ALL.iter().filter(|n| !n.starts_with("conv_sm90g_")).count();
    assert_eq!(
        used.len(),
        gemm,
        "every GEMM entry point exercised: {used:?}"
    );
}

/// A row's bits do not depend on M (the block count, the TMA's zero rows
/// past M, the rows the epilogue skips): the first 5 rows at M 300 and at M 5.
#[test]
fn row_bits_do_not_depend_on_m() {
    let Some(gpu) = gpu_or_skip() else { return };
    if !sm90(&gpu) {
        return;
    }
    let s = gpu.stream(0);
    let big = case([3, 256, 10, 10], 256, true, 1, 77);
    let d = upload(&s, &big);
    let (k, n) = (big.p.k as usize, big.p.cout as usize);
    let small = Case {
        p: ConvParams {
            n: 1,
            h: 1,
            w: 5,
            oh: 1,
            ow: 5,
            m: 5,
            ..big.p
        },
        x: big.x[..5 * k].to_vec(),
        w: big.w.clone(),
        bias: big.bias.clone(),
        residual: big.residual.as_ref().map(|r| r[..5 * n].to_vec()),
        ..case([1, 64, 1, 1], 128, false, 0, 1)
    };
    let ds = upload(&s, &small);
    for bn in [128, 256] {
        let all = run(&s, &big, &d, bn).unwrap();
        let five = run(&s, &small, &ds, bn).unwrap();
        assert_eq!(
            five,
            all[..5 * n],
            "tile {bn}: M 5 vs the first rows of M 300"
        );
    }
}

/// What the kernels do not take is refused with the reason, so that the
/// caller falls back to the mma.sync kernels.
#[test]
fn refuses_what_it_does_not_compute() {
    let a = |k, s, p, g| attrs(k, s, p, 1, g, Activation::None);
    let p = |at, xs: [usize; 4], cout| build(&at, xs, cout, false, 0, 1).p;
    let why = |p: &ConvParams| refusal(p).unwrap_or_default();
    assert!(why(&p(a(3, 1, 1, 1), [1, 64, 5, 5], 128)).contains("1x1"));
    assert!(why(&p(a(1, 2, 0, 1), [1, 64, 5, 5], 128)).contains("stride"));
    assert!(why(&p(a(1, 1, 0, 2), [1, 128, 5, 5], 128)).contains("groups"));
    assert!(why(&p(a(1, 1, 0, 1), [1, 12, 5, 5], 128)).contains("16 bytes"));
    assert!(why(&p(a(1, 1, 0, 1), [1, 64, 5, 5], 64)).contains("a quarter"));
    assert!(why(&p(a(1, 1, 0, 1), [1, 64, 5, 5], 132)).contains("multiple of 8"));
    // Ragged K and N within a quarter of padding: ConvNeXt's and Swin's 96s.
    assert_eq!(refusal(&p(a(1, 1, 0, 1), [1, 96, 5, 5], 96)), None);
    assert_eq!(refusal(&p(a(1, 1, 0, 1), [1, 96, 5, 5], 192)), None);
    assert_eq!(refusal(&p(a(1, 1, 0, 1), [1, 64, 5, 5], 384)), None);
    assert_eq!(tile_n(&p(a(1, 1, 0, 1), [1, 64, 5, 5], 384)), 128);
    assert_eq!(tile_n(&p(a(1, 1, 0, 1), [1, 64, 5, 5], 512)), 256);

    // The gather kernels' refusals: 8-channel groups (a 64-channel chunk
    // 1/8 full), RGB stems, group widths no tile divides.
    let gwhy = |p: &ConvParams| gather_refusal(p).unwrap_or_default();
    assert!(gwhy(&p(a(3, 1, 1, 32), [1, 256, 5, 5], 256)).contains("3/4 full"));
    assert!(gwhy(&p(a(7, 2, 3, 1), [1, 3, 9, 9], 64)).contains("16 bytes"));
    assert!(gwhy(&p(a(3, 1, 1, 2), [1, 128, 5, 5], 80)).contains("divides"));
    assert_eq!(
        gather_refusal(&p(a(3, 1, 1, 32), [1, 1536, 5, 5], 1536)),
        None
    );
    assert_eq!(
        gather_tile(&p(a(3, 1, 1, 32), [1, 1536, 5, 5], 1536)),
        Some((256, 48))
    );
    assert_eq!(
        gather_tile(&p(a(3, 1, 1, 32), [1, 12288, 2, 2], 12288)),
        Some((128, 192))
    );

    let Some(gpu) = gpu_or_skip() else { return };
    if !sm90(&gpu) {
        return;
    }
    let s = gpu.stream(0);
    let c = case([1, 64, 3, 3], 128, false, 0, 5);
    let d = upload(&s, &c);
    // The 256-wide tile on Cout 128, and an output off a 16-byte boundary.
    let e = run(&s, &c, &d, 256).unwrap_err().to_string();
    assert!(e.contains("tile of 256"), "{e}");
    let y = s.to_device(&vec![0u16; 9 * 128 + 8]).unwrap();
    let io = ConvIo {
        x: d.x.region(&s, 0..d.x.len()).unwrap(),
        w: d.w.region(&s, 0..d.w.len()).unwrap(),
        bias: d.bias.region(&s, 0..d.bias.len()).unwrap(),
        residual: None,
        y: y.region(&s, 1..9 * 128 + 1).unwrap(),
        workspace: None,
    };
    let e = conv1x1_sm90(&s, &c.p, 128, io).unwrap_err().to_string();
    assert!(e.contains("16-byte"), "{e}");
}

/// (name, (kernel, stride, pad, dilation, groups), x NCHW, Cout, residual,
/// activation code, the tile's channels): a relu and an `_any` case for
/// every gather tile, over 3x3 (plain, strided, dilated, grouped at 48, 96
/// and 192 channels a group), 5x5 with Cin_g 112 (a chunk 3/4 full), a
/// strided 1x1 downsample, a ragged Cout (1000), M below and above a tile.
type GatherCase = (&'static str, [usize; 5], [usize; 4], usize, bool, u32, u32);

fn gather_cases() -> Vec<GatherCase> {
    vec![
        (
            "3x3 g4x48, relu",
            [3, 1, 1, 1, 4],
            [1, 192, 5, 7],
            192,
            false,
            1,
            48,
        ),
        (
            "3x3/2 g2x48, sigmoid + residual",
            [3, 2, 1, 1, 2],
            [2, 96, 9, 8],
            96,
            true,
            4,
            48,
        ),
        (
            "3x3 64->64, relu, M 198",
            [3, 1, 1, 1, 1],
            [2, 64, 9, 11],
            64,
            false,
            1,
            64,
        ),
        (
            "1x1/2 downsample 128->64",
            [1, 2, 0, 1, 1],
            [1, 128, 9, 9],
            64,
            false,
            0,
            64,
        ),
        (
            "3x3 g2x96, relu",
            [3, 1, 1, 1, 2],
            [1, 192, 6, 6],
            192,
            false,
            1,
            96,
        ),
        (
            "3x3/2 g2x96, SiLU + residual",
            [3, 2, 1, 1, 2],
            [1, 192, 9, 9],
            192,
            true,
            2,
            96,
        ),
        (
            "3x3 dilation 2, 128->128, relu",
            [3, 1, 2, 2, 1],
            [1, 128, 7, 9],
            128,
            false,
            1,
            128,
        ),
        (
            "3x3 64->1000 (ragged N), GELU erf",
            [3, 1, 1, 1, 1],
            [1, 64, 5, 6],
            1000,
            false,
            5,
            128,
        ),
        (
            "3x3 g2x192, relu",
            [3, 1, 1, 1, 2],
            [1, 384, 5, 6],
            384,
            false,
            1,
            192,
        ),
        (
            "5x5 112->192, HardSwish + residual",
            [5, 1, 2, 1, 1],
            [1, 112, 6, 7],
            192,
            true,
            3,
            192,
        ),
        (
            "3x3 128->256, relu, M 130",
            [3, 1, 1, 1, 1],
            [2, 128, 5, 13],
            256,
            false,
            1,
            256,
        ),
        (
            "3x3/2 256->512, GELU tanh + residual",
            [3, 2, 1, 1, 1],
            [1, 256, 8, 8],
            512,
            true,
            6,
            256,
        ),
    ]
}

fn gather_case(g: [usize; 5], xs: [usize; 4], cout: usize, res: bool, act: u32, seed: u64) -> Case {
    let a = attrs(g[0], g[1], g[2], g[3], g[4], Activation::None);
    build(&a, xs, cout, res, act, seed)
}

/// Runs the gather kernels on `c` into a NaN-poisoned output.
fn run_gather(s: &Stream, c: &Case, d: &Dev) -> Result<Vec<u16>> {
    let len = c.p.m as usize * c.p.cout as usize;
    let y = s.to_device(&vec![0x7FC1u16; len])?;
    let io = ConvIo {
        x: d.x.region(s, 0..d.x.len())?,
        w: d.w.region(s, 0..d.w.len())?,
        bias: d.bias.region(s, 0..d.bias.len())?,
        residual: d
            .residual
            .as_ref()
            .map(|r| r.region(s, 0..r.len()))
            .transpose()?,
        y: y.region(s, 0..len)?,
        workspace: None,
    };
    conv_gather_sm90(s, &c.p, io)?;
    s.to_host(&y)
}

#[test]
fn gather_kernels_match_cpu_twin() {
    let Some(gpu) = gpu_or_skip() else { return };
    if !sm90(&gpu) {
        return;
    }
    let s = gpu.stream(0);
    let mut used = std::collections::BTreeSet::new();
    for (i, (name, g, xs, cout, res, act, bn)) in gather_cases().into_iter().enumerate() {
        let c = gather_case(g, xs, cout, res, act, 500 + i as u64);
        assert!(refusal(&c.p).is_some(), "{name}: the TMA GEMM's layer");
        assert_eq!(gather_refusal(&c.p), None, "{name}");
        let (bm, tile_bn) = gather_tile(&c.p).unwrap();
        assert_eq!(tile_bn, bn, "{name}: tile");
        let k = gather_kernel(&c.p, bm, bn).unwrap().name;
        used.insert(k);
        let (want, mag) = cpu::conv2d(&c.p, &c.x, &c.w, &c.bias, c.residual.as_deref());
        let d = upload(&s, &c);
        let bits = run_gather(&s, &c, &d).unwrap();
        let got: Vec<f32> = bits.iter().map(|&b| f32_of(b)).collect();
        let report = Tol::Bf16Accum { k: c.p.k as usize }
            .check(&got, &want, &mag)
            .unwrap_or_else(|e| panic!("{name} ({k}): {e}"));
        println!("{name} ({k}): {report}");
    }
    let gather: Vec<&str> = ALL
        .iter()
        .copied()
        .filter(|n| n.starts_with("conv_sm90g_"))
        .collect();
    assert_eq!(
        used.len(),
        gather.len(),
        "every gather entry point exercised: {used:?}"
    );
}

/// An image's bits do not depend on the batch (the blocks, the rows past
/// M, the pixels of other images a tile holds): image 0 of a batch of 3
/// against image 0 alone, grouped and strided.
#[test]
fn gather_image_bits_do_not_depend_on_the_batch() {
    let Some(gpu) = gpu_or_skip() else { return };
    if !sm90(&gpu) {
        return;
    }
    let s = gpu.stream(0);
    let g = [3, 2, 1, 1, 2];
    let big = gather_case(g, [3, 96, 11, 10], 96, true, 1, 91);
    let one = gather_case(g, [1, 96, 11, 10], 96, true, 1, 91);
    let (px_in, px_out) = (11 * 10 * 96, one.p.m as usize * 96);
    let small = Case {
        x: big.x[..px_in].to_vec(),
        w: big.w.clone(),
        bias: big.bias.clone(),
        residual: big.residual.as_ref().map(|r| r[..px_out].to_vec()),
        ..one
    };
    let d = upload(&s, &big);
    let all = run_gather(&s, &big, &d).unwrap();
    let first = run_gather(&s, &small, &upload(&s, &small)).unwrap();
    assert_eq!(first, all[..px_out], "image 0 alone vs in a batch of 3");
    // A batch past the kernel's 32-bit offsets runs as launches of whole
    // images (here of two, then one): the same bits.
    let len = big.p.m as usize * 96;
    let y = s.to_device(&vec![0x7FC1u16; len]).unwrap();
    let io = ConvIo {
        x: d.x.region(&s, 0..d.x.len()).unwrap(),
        w: d.w.region(&s, 0..d.w.len()).unwrap(),
        bias: d.bias.region(&s, 0..d.bias.len()).unwrap(),
        residual: d
            .residual
            .as_ref()
            .map(|r| r.region(&s, 0..r.len()).unwrap()),
        y: y.region(&s, 0..len).unwrap(),
        workspace: None,
    };
    gather_in_launches(&s, &big.p, io, 2 * px_in as u64 + 1).unwrap();
    assert_eq!(
        s.to_host(&y).unwrap(),
        all,
        "launches of 2 + 1 images vs one of 3"
    );
}
