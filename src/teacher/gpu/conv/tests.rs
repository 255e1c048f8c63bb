//! Kernel-vs-twin tests of the convolution kernels (under the stand-in
//! without a GPU), the shape rule and the twin against the CPU executor.

use super::*;
use crate::cuda::testing::{Tol, gpu_or_skip};
use crate::rng::Philox;
use crate::teacher::graph::AutoPad;
use crate::teacher::tensor::Tensor;

pub(crate) fn attrs(
    k: usize,
    s: usize,
    p: usize,
    d: usize,
    group: usize,
    act: Activation,
) -> ConvAttrs {
    ConvAttrs {
        kernel: [k, k],
        strides: [s, s],
        pads: [p, p, p, p],
        dilations: [d, d],
        group,
        auto_pad: AutoPad::Explicit,
        act,
    }
}

/// (name, attrs, x NCHW, Cout, residual, epilogue activation code or 0
/// for the attrs' own): the shapes ResNet/ResNeXt teachers have (7x7/2
/// stem on RGB, 1x1, 3x3 grouped at 32 groups of 8 and of 16, strided,
/// dilated, FC as 1x1 on 1x1), every tile width (8, 16, 32 and 64
/// channels a group), the depthwise kernel (MobileNet's 3x3, ConvNeXt's
/// 7x7, a channel multiplier of 2) and every fused activation (SiLU,
/// HardSwish, sigmoid as MobileNet/EfficientNet fold them), at odd sizes
/// and batches not a multiple of the tile.
type ConvCase = (&'static str, ConvAttrs, [usize; 4], usize, bool, u32);

fn cases() -> Vec<ConvCase> {
    use Activation::{None, Relu};
    vec![
        (
            "stem 7x7/2 rgb",
            attrs(7, 2, 3, 1, 1, Relu),
            [2, 3, 37, 29],
            64,
            false,
            0,
        ),
        (
            "1x1 residual",
            attrs(1, 1, 0, 1, 1, Relu),
            [3, 64, 9, 7],
            96,
            true,
            0,
        ),
        // kernels/conv_grouped.cu: Ng 8 (block-diagonal), 16 and 32,
        // both strides, ReLU fixed and read from p, both stride-1
        // tiles (candidates), sizes no tile divides.
        (
            "3x3 g32x8 (grouped s1 relu)",
            attrs(3, 1, 1, 1, 32, Relu),
            [2, 256, 11, 10],
            256,
            false,
            0,
        ),
        (
            "3x3/2 g32x16 (grouped s2 any)",
            attrs(3, 2, 1, 1, 32, None),
            [1, 512, 13, 13],
            512,
            false,
            0,
        ),
        (
            "3x3 g2x32 14x14 (grouped s1, two k chunks)",
            attrs(3, 1, 1, 1, 2, Relu),
            [2, 64, 14, 14],
            64,
            false,
            0,
        ),
        (
            "3x3/2 g4x32 (grouped s2 relu)",
            attrs(3, 2, 1, 1, 4, Relu),
            [1, 128, 15, 18],
            128,
            false,
            0,
        ),
        (
            "3x3 g16x8 SiLU (grouped s1 any)",
            attrs(3, 1, 1, 1, 16, None),
            [1, 128, 9, 37],
            128,
            false,
            2,
        ),
        // Narrow groups the grouped kernel does not take: the older kernels.
        (
            "3x3 g32x8 + residual (128x8)",
            attrs(3, 1, 1, 1, 32, Relu),
            [1, 256, 7, 6],
            256,
            true,
            0,
        ),
        (
            "1x1/2 g32x16 (128x16)",
            attrs(1, 2, 0, 1, 32, None),
            [1, 512, 9, 9],
            512,
            false,
            0,
        ),
        (
            "3x3 g16x24 (128x32 tile), SiLU",
            attrs(3, 1, 1, 1, 16, None),
            [2, 384, 7, 6],
            384,
            false,
            2,
        ),
        (
            "3x3 g8x48",
            attrs(3, 1, 1, 1, 8, Relu),
            [1, 384, 6, 5],
            384,
            true,
            0,
        ),
        (
            "3x3 dilated 2",
            attrs(3, 1, 2, 2, 1, None),
            [1, 24, 10, 12],
            40,
            false,
            0,
        ),
        (
            "1x1 HardSwish + residual",
            attrs(1, 1, 0, 1, 1, None),
            [2, 40, 7, 7],
            72,
            true,
            3,
        ),
        (
            "1x1 sigmoid",
            attrs(1, 1, 0, 1, 1, None),
            [1, 16, 5, 5],
            24,
            false,
            4,
        ),
        (
            "fc",
            attrs(1, 1, 0, 1, 1, None),
            [5, 200, 1, 1],
            1000,
            false,
            0,
        ),
        (
            "odd cin",
            attrs(3, 1, 1, 1, 1, Relu),
            [1, 5, 7, 9],
            12,
            false,
            0,
        ),
        (
            "depthwise 3x3/2",
            attrs(3, 2, 1, 1, 32, Relu),
            [2, 32, 9, 11],
            32,
            false,
            0,
        ),
        (
            "depthwise 7x7 + residual",
            attrs(7, 1, 3, 1, 24, None),
            [1, 24, 10, 10],
            24,
            true,
            0,
        ),
        (
            "depthwise 5x5 x2, HardSwish",
            attrs(5, 1, 2, 1, 16, None),
            [1, 16, 8, 7],
            32,
            false,
            3,
        ),
        // The conv_tc kernels: each tile and epilogue, two n tiles,
        // M not a multiple of 128, strides and 3x3 windows.
        (
            "1x1/2 downsample (128x128 none)",
            attrs(1, 2, 0, 1, 1, None),
            [2, 64, 25, 23],
            256,
            false,
            0,
        ),
        (
            "3x3 96->128 (128x128 relu)",
            attrs(3, 1, 1, 1, 1, Relu),
            [1, 96, 12, 13],
            128,
            false,
            0,
        ),
        (
            "1x1 SiLU (128x128 any)",
            attrs(1, 1, 0, 1, 1, None),
            [1, 64, 9, 9],
            256,
            false,
            2,
        ),
        (
            "3x3/2 128->192 (128x64 relu)",
            attrs(3, 2, 1, 1, 1, Relu),
            [1, 128, 13, 11],
            192,
            false,
            0,
        ),
        (
            "1x1 32->64 (128x64 none)",
            attrs(1, 1, 0, 1, 1, None),
            [1, 32, 10, 14],
            64,
            false,
            0,
        ),
        (
            "3x3 residual (128x64 relu_res)",
            attrs(3, 1, 1, 1, 1, Relu),
            [2, 64, 8, 9],
            64,
            true,
            0,
        ),
        (
            "1x1 add, no activation (128x64 any)",
            attrs(1, 1, 0, 1, 1, None),
            [1, 32, 7, 7],
            64,
            true,
            0,
        ),
        (
            "7x7/2 stem on 8 channels (chunks: four taps a k-tile)",
            attrs(7, 2, 3, 1, 1, Relu),
            [2, 8, 21, 19],
            64,
            false,
            0,
        ),
        // The 48-wide tile: Ng 48 (one-wrap chunk gather, ReLU fixed),
        // and Ng 96 strided and dilated, where it is a candidate beside
        // the row-gather tiles ("3x3 g8x48" above: its `_any`).
        (
            "3x3 g4x48 (128x48 relu)",
            attrs(3, 1, 1, 1, 4, Relu),
            [2, 192, 11, 9],
            192,
            false,
            0,
        ),
        (
            "3x3/2 g2x96 dilated (128x128 relu, 128x48 candidate)",
            attrs(3, 2, 2, 2, 2, Relu),
            [1, 192, 13, 12],
            192,
            false,
            0,
        ),
        (
            "3x3/2 grouped g2x64 dilated (128x64 relu)",
            attrs(3, 2, 2, 2, 2, Relu),
            [1, 128, 15, 14],
            128,
            false,
            0,
        ),
        // Split K (an output of one pixel an image, more than 8
        // k-tiles): FC layers with 2 slices (both tiles) and with 3
        // uneven ones (8, 8, 1 k-tiles: the chunk gather, a residual,
        // SiLU); a 3x3/2 down to 1x1 whose slices start at later taps,
        // some outside the image (rows gather, 9 slices), and the same
        // with 40 channels (chunks, slices starting mid-tap).
        // GELU folded into the epilogue (ViT's MLP, ConvNeXt's pointwise
        // convolutions): erf in the tc kernel, tanh in a split FC and in
        // a grouped kernel.
        (
            "1x1 GELU erf (128x128 any)",
            attrs(1, 1, 0, 1, 1, None),
            [2, 64, 9, 9],
            256,
            false,
            5,
        ),
        (
            "fc 1024->72 GELU tanh (split, 4 slices)",
            attrs(1, 1, 0, 1, 1, None),
            [3, 1024, 1, 1],
            72,
            false,
            6,
        ),
        (
            "3x3 g8x16 GELU tanh (grouped s1 any)",
            attrs(3, 1, 1, 1, 8, None),
            [1, 128, 6, 7],
            128,
            false,
            6,
        ),
        (
            "fc 512->200 (split, 2 slices)",
            attrs(1, 1, 0, 1, 1, None),
            [5, 512, 1, 1],
            200,
            false,
            0,
        ),
        (
            "fc 520->64 residual silu (split chunks, 3 slices)",
            attrs(1, 1, 0, 1, 1, None),
            [3, 520, 1, 1],
            64,
            true,
            2,
        ),
        (
            "3x3/2 256->128 to 1x1 (split, 9 slices)",
            attrs(3, 2, 1, 1, 1, Relu),
            [2, 256, 2, 2],
            128,
            false,
            0,
        ),
        (
            "3x3/2 40->72 to 1x1 (split chunks, 2 slices)",
            attrs(3, 2, 1, 1, 1, None),
            [3, 40, 2, 2],
            72,
            false,
            0,
        ),
    ]
}

fn random(n: usize, r: &mut Philox, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (r.uniform_f32() - 0.5) * 2.0 * scale)
        .collect()
}

pub(crate) struct Case {
    pub p: ConvParams,
    pub x_nchw: Vec<f32>,
    pub x: Vec<u16>,
    pub w_onnx: Vec<f32>,
    pub w: Vec<u16>,
    pub bias: Vec<f32>,
    pub residual: Option<Vec<u16>>,
}

pub(crate) fn build(
    attrs: &ConvAttrs,
    xs: [usize; 4],
    cout: usize,
    residual: bool,
    act: u32,
    seed: u64,
) -> Case {
    let mut r = Philox::new(seed, 1, 2, 3);
    let ws = [cout, xs[1] / attrs.group, attrs.kernel[0], attrs.kernel[1]];
    let mut p = conv_params(attrs, xs, ws, residual).unwrap();
    if act != 0 {
        p.act = act; // as the lowering folds a following activation
    }
    // Inputs exactly representable in bf16, so the f32 executor sees the same values.
    let round = |v: Vec<f32>| -> Vec<f32> { v.into_iter().map(|f| f32_of(bf16(f))).collect() };
    let x_nchw = round(random(xs.iter().product(), &mut r, 1.0));
    let w_onnx = round(random(ws.iter().product(), &mut r, 0.5));
    let bias = random(cout, &mut r, 0.2);
    let [n, c, h, w] = xs;
    let x: Vec<u16> = (0..n * h * w * c)
        .map(|i| {
            let (px, ch) = (i / c, i % c);
            let (img, rest) = (px / (h * w), px % (h * w));
            bf16(x_nchw[(img * c + ch) * h * w + rest])
        })
        .collect();
    let residual = residual.then(|| {
        random(p.m as usize * cout, &mut r, 1.0)
            .into_iter()
            .map(bf16)
            .collect::<Vec<u16>>()
    });
    let w = pack_weights(&w_onnx, &p);
    p.has_residual = residual.is_some() as u32;
    Case {
        p,
        x_nchw,
        x,
        w_onnx,
        w,
        bias,
        residual,
    }
}

#[test]
fn twin_equals_the_cpu_executor() {
    for (i, (name, a, xs, cout, res, act)) in cases().into_iter().enumerate() {
        let c = build(&a, xs, cout, res, act, i as u64);
        let (y, _) = cpu::conv2d(&c.p, &c.x, &c.w, &c.bias, c.residual.as_deref());
        // The f32 executor on NCHW, residual NCHW too.
        let ws = [cout, xs[1] / a.group, a.kernel[0], a.kernel[1]];
        let (oh, ow) = (c.p.oh as usize, c.p.ow as usize);
        let to_nchw = |nhwc: &[f32]| -> Vec<f32> {
            (0..nhwc.len())
                .map(|i| {
                    let (img, rest) = (i / (cout * oh * ow), i % (cout * oh * ow));
                    let (ch, px) = (rest / (oh * ow), rest % (oh * ow));
                    nhwc[(img * oh * ow + px) * cout + ch]
                })
                .collect()
        };
        let r = c.residual.as_ref().map(|r| {
            let f: Vec<f32> = r.iter().map(|&b| f32_of(b)).collect();
            Tensor::f32(vec![xs[0], cout, oh, ow], to_nchw(&f))
        });
        let want = crate::teacher::cpu::conv::conv2d(
            &a,
            &Tensor::f32(xs.to_vec(), c.x_nchw.clone()),
            &Tensor::f32(ws.to_vec(), c.w_onnx.clone()),
            Some(&Tensor::f32(vec![cout], c.bias.clone())),
            r.as_ref(),
        )
        .unwrap();
        let got = to_nchw(&y);
        // The folded activations, on the executor's f32 output.
        let want: Vec<f32> = want
            .view()
            .unwrap()
            .data
            .iter()
            .map(|&v| cpu::activate(v as f64, act) as f32)
            .collect();
        let err = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
            .fold(0f32, f32::max);
        assert!(
            err < 1e-4,
            "{name}: twin vs f32 executor, max rel error {err}"
        );
    }
}

#[test]
fn packing_puts_each_tap_where_the_gather_reads_it() {
    let a = attrs(3, 1, 1, 1, 2, Activation::None);
    let p = conv_params(&a, [1, 16, 5, 5], [4, 8, 3, 3], false).unwrap();
    assert_eq!((p.k, p.k_pad, p.ng, p.cin_g), (72, 96, 2, 8));
    let w: Vec<f32> = (0..4 * 8 * 9).map(|i| i as f32).collect();
    let packed = pack_weights(&w, &p);
    // Output 3, channel 5, tap (2, 1): ONNX ((3*8 + 5)*3 + 2)*3 + 1 = 268.
    assert_eq!(f32_of(packed[3 * 96 + (2 * 3 + 1) * 8 + 5]), 268.0);
    assert!(
        packed[3 * 96 + 72..4 * 96].iter().all(|&b| b == 0),
        "zeros past K"
    );
}

#[test]
fn variants_fit_the_group_width() {
    let p = |ng: u32, cin_g: u32, act: u32, res: u32| ConvParams {
        ng,
        cin_g,
        cout: ng,
        groups: 1,
        act,
        has_bias: 1,
        has_residual: res,
        ..Default::default()
    };
    let name = |q: ConvParams| variant(&q).name();
    assert_eq!(variant(&p(8, 8, 1, 0)).bn(), 8);
    assert_eq!(variant(&p(16, 16, 1, 0)).bn(), 16);
    assert_eq!(variant(&p(24, 24, 1, 0)).bn(), 32);
    // Cin_g 48 is not a multiple of 32: the chunk gather, 48 wide
    // where Ng is a multiple of 48, with the ReLU fixed where it can be.
    assert_eq!(name(p(48, 48, 1, 0)), "conv_tc_128x48_chunks_relu");
    assert_eq!(name(p(144, 48, 2, 0)), "conv_tc_128x48_chunks_any");
    assert_eq!(name(p(48, 48, 1, 1)), "conv_tc_128x48_chunks_any");
    assert_eq!(name(p(64, 48, 1, 0)), "conv_tc_128x64_chunks_any");
    assert_eq!(name(p(48, 16, 1, 0)), "conv_tc_128x64_chunks_any");
    // Ng 96 with a row gather: the 128-wide tile, the 48-wide one a candidate.
    assert_eq!(name(p(96, 96, 1, 0)), "conv_tc_128x128_relu");
    assert!(
        candidates(&p(96, 96, 1, 0))
            .iter()
            .any(|v| v.name() == "conv_tc_128x48_chunks_relu")
    );
    assert_eq!(name(p(2048, 512, 0, 0)), "conv_tc_128x128_none");
    assert_eq!(name(p(256, 64, 1, 0)), "conv_tc_128x128_relu");
    assert_eq!(name(p(256, 64, 1, 1)), "conv_tc_128x128_relu_res");
    assert_eq!(name(p(256, 64, 2, 0)), "conv_tc_128x128_any");
    assert_eq!(name(p(256, 64, 0, 1)), "conv_tc_128x128_any");
    // 192 channels: three 64-wide tiles pad less than two 128-wide ones.
    assert_eq!(name(p(192, 64, 1, 0)), "conv_tc_128x64_relu");
    assert_eq!(name(p(64, 64, 1, 1)), "conv_tc_128x64_relu_res");
    assert_eq!(name(p(64, 3, 1, 0)), "conv_bf16_128x64_v1");
    // Ng not a multiple of 8 (no 16-byte stores): the older kernel.
    assert_eq!(name(p(100, 64, 1, 0)), "conv_bf16_128x64_v8");
    // ResNeXt's grouped 3x3: the grouped kernels, by stride and map size.
    let g = |ng: u32, s: u32, hw: u32, act: u32, res: u32| ConvParams {
        ng,
        cin_g: ng,
        cin: 32 * ng,
        cout: 32 * ng,
        groups: 32,
        kh: 3,
        kw: 3,
        sh: s,
        sw: s,
        ph: 1,
        pw: 1,
        dh: 1,
        dw: 1,
        oh: hw,
        ow: hw,
        act,
        has_bias: 1,
        has_residual: res,
        ..Default::default()
    };
    assert_eq!(name(g(8, 1, 56, 1, 0)), "conv_grouped_s1_4x32_relu");
    assert_eq!(name(g(16, 1, 28, 0, 0)), "conv_grouped_s1_4x32_any");
    assert_eq!(name(g(32, 1, 14, 1, 0)), "conv_grouped_s1_7x16_relu");
    assert_eq!(name(g(16, 2, 28, 1, 0)), "conv_grouped_s2_3x16_relu");
    assert_eq!(candidates(&g(32, 1, 14, 1, 0)).len(), 2);
    assert_eq!(candidates(&g(32, 2, 14, 1, 0)).len(), 1);
    assert_eq!(name(g(8, 2, 28, 1, 0)), "conv_bf16_128x8_v8");
    // Ng 64 (the last stage), a residual, a dilation: other kernels.
    assert_eq!(name(g(64, 1, 7, 1, 0)), "conv_tc_128x64_relu");
    assert_eq!(name(g(8, 1, 56, 1, 1)), "conv_bf16_128x8_v8");
    let dilated = ConvParams {
        dh: 2,
        dw: 2,
        ph: 2,
        pw: 2,
        ..g(8, 1, 56, 1, 0)
    };
    assert_eq!(name(dilated), "conv_bf16_128x8_v8");
    let dw = ConvParams {
        ng: 1,
        cin_g: 1,
        groups: 96,
        ..Default::default()
    };
    assert_eq!(variant(&dw).name(), "conv_depthwise_bf16_nhwc");
    assert_eq!(candidates(&dw).len(), 1);
    let c = candidates(&p(256, 64, 1, 1));
    assert_eq!(c[0], variant(&p(256, 64, 1, 1)));
    assert_eq!(
        c.iter().map(|v| v.name()).collect::<Vec<_>>(),
        [
            "conv_tc_128x128_relu_res",
            "conv_tc_128x64_relu_res",
            "conv_tc_256x128_relu_res",
            "conv_bf16_128x64_v8"
        ]
    );
    // Split K: an output of one pixel an image and more than 8 k-tiles,
    // whatever the batch; a split layer's candidates are split kernels.
    let fc = |k: u32, n: u32, batch: u32| ConvParams {
        ng: n,
        cout: n,
        cin: k,
        cin_g: k,
        kh: 1,
        kw: 1,
        oh: 1,
        ow: 1,
        groups: 1,
        k,
        k_pad: k.next_multiple_of(BK as u32),
        m: batch,
        has_bias: 1,
        ..Default::default()
    };
    assert_eq!(split_slices(&fc(2048, 1000, 256)), 8);
    assert_eq!(workspace_len(&fc(2048, 1000, 256)), 8 * 256 * 1000);
    for batch in [1, 7, 256, 4096] {
        assert_eq!(name(fc(2048, 1000, batch)), "conv_tc_128x128_split");
    }
    assert_eq!(
        candidates(&fc(2048, 1000, 256))
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>(),
        ["conv_tc_128x128_split", "conv_tc_128x64_split"]
    );
    assert_eq!(
        candidates(&fc(520, 64, 3))
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>(),
        ["conv_tc_128x64_chunks_split"]
    );
    // 8 k-tiles, or a map: whole.
    assert_eq!(split_slices(&fc(256, 1000, 1)), 1);
    assert_eq!(name(fc(256, 1000, 1)), "conv_tc_128x128_none");
    assert_eq!(workspace_len(&fc(256, 1000, 1)), 0);
    let map = ConvParams {
        oh: 7,
        ow: 7,
        ..fc(2048, 512, 49)
    };
    assert_eq!(name(map), "conv_tc_128x128_none");
    // GELU: every kernel but the older ones.
    assert!(gelu_fits(&p(256, 64, 0, 0)) && gelu_fits(&fc(2048, 1000, 1)));
    assert!(!gelu_fits(&p(100, 64, 0, 0)) && !gelu_fits(&p(64, 3, 0, 0)));
    assert!(
        candidates(&p(256, 64, 5, 0))
            .iter()
            .all(|v| !matches!(v.tile, Tile::Old { .. }))
    );
}

/// A split layer's outputs for the first images are the same bits at
/// batch 2 as at batch 130 (two M tiles, other block counts): the
/// slices are fixed by K, never by the batch.
#[test]
fn split_k_bits_do_not_depend_on_the_batch() {
    let Some(gpu) = gpu_or_skip() else { return };
    let s = gpu.stream(0);
    let a = attrs(1, 1, 0, 1, 1, Activation::Relu);
    let big = build(&a, [130, 1024, 1, 1], 136, true, 0, 7);
    let run = |p: &ConvParams, x: &[u16], res: &[u16]| -> Vec<u16> {
        assert!(split_slices(p) > 1);
        let dx = s.to_device(x).unwrap();
        let dw = s.to_device(&big.w).unwrap();
        let db = s.to_device(&big.bias).unwrap();
        let dr = s.to_device(res).unwrap();
        let ws = s.to_device(&vec![f32::NAN; workspace_len(p)]).unwrap();
        let mut dy = s.to_device(&vec![0x7FC1u16; p.m as usize * 136]).unwrap();
        conv2d(&s, p, &dx, &dw, &db, Some(&dr), &mut dy, Some(&ws)).unwrap();
        s.to_host(&dy).unwrap()
    };
    let res = big.residual.as_deref().unwrap();
    let all = run(&big.p, &big.x, res);
    let small = ConvParams {
        n: 2,
        m: 2,
        ..big.p
    };
    let two = run(&small, &big.x[..2 * 1024], &res[..2 * 136]);
    assert_eq!(
        two,
        all[..2 * 136],
        "batch 2 vs the first rows of batch 130"
    );
}

#[test]
fn kernel_matches_cpu_twin() {
    let Some(gpu) = gpu_or_skip() else { return };
    let s = gpu.stream(0);
    let mut variants = std::collections::BTreeSet::new();
    for (i, (name, a, xs, cout, res, act)) in cases().into_iter().enumerate() {
        let c = build(&a, xs, cout, res, act, 100 + i as u64);
        let (want, mag) = cpu::conv2d(&c.p, &c.x, &c.w, &c.bias, c.residual.as_deref());
        let up = |v: &[u16]| s.to_device(v).unwrap();
        let (dx, dw) = (up(&c.x), up(&c.w));
        let dr = c.residual.as_deref().map(up);
        let db = s.to_device(&c.bias).unwrap();
        // Poisoned (NaN): a split kernel must write every partial it reads.
        let dws = s
            .to_device(&vec![f32::NAN; workspace_len(&c.p).max(1)])
            .unwrap();
        let io = |y: Region<u16>| ConvIo {
            x: dx.region(&s, 0..dx.len()).unwrap(),
            w: dw.region(&s, 0..dw.len()).unwrap(),
            bias: db.region(&s, 0..db.len()).unwrap(),
            residual: dr.as_ref().map(|b| b.region(&s, 0..b.len()).unwrap()),
            y,
            workspace: Some(dws.region(&s, 0..dws.len()).unwrap()),
        };
        // Every kernel that computes the case: within the tolerance of
        // the twin, and bit for bit the same as each other.
        let mut first: Option<Vec<u16>> = None;
        for v in candidates(&c.p) {
            variants.insert(v.name());
            if let Entry::Split(_) = v.entry {
                variants.insert(CONV_SPLIT_REDUCE.name);
            }
            let dy = up(&vec![0x7FC1u16; want.len()]); // poisoned: NaN
            conv2d_variant(&s, &c.p, v, io(dy.region(&s, 0..dy.len()).unwrap())).unwrap();
            let bits = s.to_host(&dy).unwrap();
            let got: Vec<f32> = bits.iter().map(|&b| f32_of(b)).collect();
            let report = Tol::Bf16Accum { k: c.p.k as usize }
                .check(&got, &want, &mag)
                .unwrap_or_else(|e| panic!("{name} ({}): {e}", v.name()));
            println!("{name} ({}): {report}", v.name());
            match &first {
                None => first = Some(bits),
                Some(f) => {
                    let differ = f.iter().zip(&bits).filter(|(a, b)| a != b).count();
                    assert_eq!(
                        differ,
                        0,
                        "{name}: {} differs from {} in {differ} outputs",
                        v.name(),
                        variant(&c.p).name()
                    );
                }
            }
        }
        // A tc or grouped kernel on a region off a 16-byte boundary is
        // refused by name.
        if let Some(v) = candidates(&c.p).into_iter().find(|v| v.vector()) {
            let wide = up(&vec![0u16; want.len() + 8]);
            let off = wide.region(&s, 1..want.len() + 1).unwrap();
            let e = conv2d_variant(&s, &c.p, v, io(off)).unwrap_err();
            assert!(e.to_string().contains("16-byte"), "{name}: {e}");
        }
        // A split layer without its workspace is refused by name.
        if split_slices(&c.p) > 1 {
            let dy = up(&vec![0u16; want.len()]);
            let none = ConvIo {
                workspace: None,
                ..io(dy.region(&s, 0..dy.len()).unwrap())
            };
            let e = conv2d_regions(&s, &c.p, none).unwrap_err();
            assert!(e.to_string().contains("workspace"), "{name}: {e}");
        }
        // The default path (alignment checked) is the first candidate.
        let mut dy = up(&vec![0x7FC1u16; want.len()]);
        conv2d(&s, &c.p, &dx, &dw, &db, dr.as_ref(), &mut dy, Some(&dws)).unwrap();
        assert_eq!(
            s.to_host(&dy).unwrap(),
            first.unwrap(),
            "{name}: conv2d differs from its variant"
        );
    }
    // A GELU on a layer only the older kernels compute is refused by name.
    let c = build(
        &attrs(3, 1, 1, 1, 1, Activation::None),
        [1, 5, 4, 4],
        12,
        false,
        5,
        7,
    );
    let up = |v: &[u16]| s.to_device(v).unwrap();
    let (dx, dw) = (up(&c.x), up(&c.w));
    let db = s.to_device(&c.bias).unwrap();
    let mut dy = up(&vec![0u16; c.p.m as usize * 12]);
    let e = conv2d(&s, &c.p, &dx, &dw, &db, None, &mut dy, None).unwrap_err();
    assert!(e.to_string().contains("no GELU"), "{e}");
    use crate::cuda::kernels::{conv, conv_grouped};
    assert_eq!(
        variants.len(),
        conv::ALL.len() + conv_grouped::ALL.len(),
        "every conv and conv_grouped entry point is exercised: {variants:?}"
    );
}
