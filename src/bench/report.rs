//! The JSON envelope every benchmark result is written in.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::build_info;
use crate::cuda::{DeviceInfo, EMULATED, Event, Gpu, Stream, driver_version_string};

#[derive(Debug, Serialize)]
pub struct Meta {
    pub bench: String,
    pub date_utc: String,
    pub dr_version: String,
    pub commit: String,
    pub kernels: String,
    pub driver: String,
    pub driver_version: i32,
    pub device: DeviceInfo,
    /// Set on the CPU stand-in: every time in the report is emulation time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emulated: Option<&'static str>,
}

impl Meta {
    pub fn new(bench: &str, gpu: &Gpu) -> Self {
        Meta {
            bench: bench.into(),
            date_utc: utc_now(),
            dr_version: build_info::VERSION.into(),
            commit: build_info::COMMIT.into(),
            kernels: build_info::kernels_line(),
            driver: driver_version_string(gpu.driver_version()),
            driver_version: gpu.driver_version(),
            device: gpu.info().clone(),
            emulated: gpu.info().stand_in.then_some(EMULATED),
        }
    }

    /// `<dir>/<date>-<gpu>-<bench>.json`
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        let day = &self.date_utc[..10];
        dir.join(format!(
            "{day}-{}-{}.json",
            slug(&self.device.name),
            self.bench
        ))
    }
}

/// What `dr bench` prints for a report: its table (or JSON), and the result
/// file written to `out_dir`. On the stand-in every line of the table is
/// labelled and no file is written: bench-results/ holds measurements only.
pub fn publish(
    r: &impl Serialize,
    meta: &Meta,
    out_dir: &Path,
    json: bool,
    table: String,
) -> Result<(String, Option<PathBuf>)> {
    let shown = if json {
        serde_json::to_string_pretty(r)? + "\n"
    } else if meta.emulated.is_some() {
        table
            .lines()
            .map(|l| format!("({EMULATED}) {l}\n"))
            .collect()
    } else {
        table
    };
    if meta.emulated.is_some() {
        return Ok((shown, None));
    }
    let path = meta.path_in(out_dir);
    write_json(&path, r)?;
    Ok((shown, Some(path)))
}

/// Writes `value` as pretty JSON to `path`, creating its folder.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// "NVIDIA H100 80GB HBM3" → "nvidia-h100-80gb-hbm3"
pub fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    s.trim_matches('-').to_owned()
}

/// Current UTC time as "YYYY-MM-DDTHH:MM:SSZ".
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Median of samples (mean of the middle two for an even count).
pub fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times `op` `warmup + iters` times with events on `stream`; returns the timed ms.
pub fn time(
    stream: &Stream,
    warmup: usize,
    iters: usize,
    mut op: impl FnMut() -> crate::cuda::Result<()>,
) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        op()?;
    }
    let mut marks: Vec<(Event, Event)> = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = stream.record()?;
        op()?;
        marks.push((start, stream.record()?));
    }
    stream.synchronize()?;
    marks
        .iter()
        .map(|(a, b)| Ok(a.elapsed_ms(b)? as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_436_529), "2026-11-23T12:22:09Z");
    }

    #[test]
    fn slugs_and_medians() {
        assert_eq!(slug("NVIDIA H100 80GB HBM3"), "nvidia-h100-80gb-hbm3");
        assert_eq!(slug("  A/B  "), "a-b");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
