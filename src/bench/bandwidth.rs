//! `dr bench bandwidth`: host↔device copies (pinned and pageable) against the
//! PCIe link's peak, and device-to-device traffic through our copy and fill
//! kernels against the DRAM peak, with the driver's own device copy measured
//! in the same run as the peer.
//!
//! Bytes are counted as moved through the memory that limits the transfer:
//! host copies count the buffer once; a device copy counts it twice (read
//! plus write), as METHOD.md's ceiling does; a fill counts it once.

use anyhow::{Context, Result};
use serde::Serialize;

use super::report::{Meta, median, time};
use crate::cuda::{DevBuf, Gpu, PinnedKind, memops};

#[derive(Debug, Clone, Serialize)]
pub struct Options {
    pub device: usize,
    /// Buffer size for host↔device copies.
    pub host_bytes: usize,
    /// Buffer size for device-side copies (each of source and destination).
    pub device_bytes: usize,
    pub warmup: usize,
    pub iters: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            device: 0,
            host_bytes: 256 << 20,
            device_bytes: 1 << 30,
            warmup: 3,
            iters: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub name: &'static str,
    pub what: &'static str,
    pub buffer_bytes: u64,
    pub counted_bytes: u64,
    pub samples_ms: Vec<f64>,
    pub median_gbps: f64,
    pub best_gbps: f64,
    pub peak_gbps: Option<f64>,
    pub pct_of_peak: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub meta: Meta,
    pub options: Options,
    pub results: Vec<Measurement>,
    /// Our copy kernel over the driver's cuMemcpyDtoD, median over median.
    pub copy_kernel_vs_driver: f64,
}

fn measurement(
    name: &'static str,
    what: &'static str,
    buffer_bytes: usize,
    counted_bytes: usize,
    samples_ms: Vec<f64>,
    peak_gbps: Option<f64>,
) -> Measurement {
    let gbps = |ms: f64| counted_bytes as f64 / (ms * 1e-3) / 1e9;
    let median_gbps = gbps(median(&samples_ms));
    let best = samples_ms.iter().copied().fold(f64::INFINITY, f64::min);
    Measurement {
        name,
        what,
        buffer_bytes: buffer_bytes as u64,
        counted_bytes: counted_bytes as u64,
        median_gbps,
        best_gbps: gbps(best),
        pct_of_peak: peak_gbps.map(|p| 100.0 * median_gbps / p),
        peak_gbps,
        samples_ms,
    }
}

pub fn run(opts: &Options) -> Result<Report> {
    let gpu = Gpu::open(opts.device).context("`dr bench bandwidth` measures a CUDA GPU")?;
    let s = gpu.stream(0);
    let (free, _) = gpu.memory()?;
    // Source + destination must fit with room to spare.
    let dev_bytes = opts.device_bytes.min(free / 4) & !4095;
    let host_bytes = opts.host_bytes.min(dev_bytes);
    let pcie = gpu.info().pcie.as_ref().map(|p| p.peak_gbps);
    let dram = gpu.info().peak_dram_gbps;
    let (w, n) = (opts.warmup, opts.iters);

    let mut src: DevBuf<u8> = gpu.alloc(dev_bytes)?;
    let mut dst: DevBuf<u8> = gpu.alloc(dev_bytes)?;
    // Real data, not zeros: nothing in the path may shortcut on it.
    let pattern: Vec<u8> = (0..host_bytes)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut results = Vec::new();

    let mut up = gpu.pinned().take(PinnedKind::Upload, host_bytes)?;
    up.as_mut_slice()?.copy_from_slice(&pattern);
    let t = time(&s, w, n, || s.upload_pinned(&mut up, &mut src))?;
    results.push(measurement(
        "h2d_pinned",
        "host to device, pinned write-combined source",
        host_bytes,
        host_bytes,
        t,
        pcie,
    ));

    let t = time(&s, w, n, || s.upload(&pattern, &mut src))?;
    results.push(measurement(
        "h2d_pageable",
        "host to device, pageable source",
        host_bytes,
        host_bytes,
        t,
        pcie,
    ));

    let mut down = gpu.pinned().take(PinnedKind::Download, host_bytes)?;
    let t = time(&s, w, n, || s.download_pinned(&src, &mut down))?;
    // The copy into pinned memory must have moved the real bytes.
    anyhow::ensure!(
        down.as_slice()?[..host_bytes] == pattern[..],
        "device-to-host copy returned wrong bytes"
    );
    results.push(measurement(
        "d2h_pinned",
        "device to host, pinned destination",
        host_bytes,
        host_bytes,
        t,
        pcie,
    ));

    let mut pageable = vec![0u8; dev_bytes];
    let t = time(&s, w, n, || s.download(&src, &mut pageable))?;
    results.push(measurement(
        "d2h_pageable",
        "device to host, pageable destination",
        dev_bytes,
        dev_bytes,
        t,
        pcie,
    ));

    let t = time(&s, w, n, || memops::copy_bytes(&s, &src, &mut dst))?;
    results.push(measurement(
        "d2d_copy_kernel",
        "device copy, dr copy_bytes kernel (read + write counted)",
        dev_bytes,
        2 * dev_bytes,
        t,
        dram,
    ));

    let t = time(&s, w, n, || s.copy_driver(&src, &mut dst))?;
    results.push(measurement(
        "d2d_driver",
        "device copy, cuMemcpyDtoDAsync (peer; read + write counted)",
        dev_bytes,
        2 * dev_bytes,
        t,
        dram,
    ));

    let mut words: DevBuf<u32> = gpu.alloc(dev_bytes / 4)?;
    let t = time(&s, w, n, || memops::fill_u32(&s, &mut words, 0x5A5A_1234))?;
    results.push(measurement(
        "d2d_fill_kernel",
        "device fill, dr fill_u32 kernel (write counted)",
        dev_bytes,
        dev_bytes,
        t,
        dram,
    ));

    let ratio = results[4].median_gbps / results[5].median_gbps;
    drop(pageable);
    Ok(Report {
        meta: Meta::new("bandwidth", &gpu),
        options: Options {
            host_bytes,
            device_bytes: dev_bytes,
            ..opts.clone()
        },
        results,
        copy_kernel_vs_driver: ratio,
    })
}

impl Report {
    pub fn render(&self) -> String {
        let d = &self.meta.device;
        let mut s = format!(
            "{} ({}, {} SMs), driver {}, dr {}\n{:<16} {:>10} {:>11} {:>11} {:>10} {:>7}\n",
            d.name,
            d.arch(),
            d.sm_count,
            self.meta.driver,
            self.meta.commit,
            "test",
            "MiB",
            "median GB/s",
            "best GB/s",
            "peak GB/s",
            "% peak"
        );
        for m in &self.results {
            s.push_str(&format!(
                "{:<16} {:>10} {:>11.1} {:>11.1} {:>10} {:>7}\n",
                m.name,
                m.buffer_bytes >> 20,
                m.median_gbps,
                m.best_gbps,
                m.peak_gbps.map_or("-".into(), |p| format!("{p:.0}")),
                m.pct_of_peak.map_or("-".into(), |p| format!("{p:.1}")),
            ));
        }
        s.push_str(&format!(
            "copy kernel / driver copy: {:.3}x\n",
            self.copy_kernel_vs_driver
        ));
        s
    }
}
