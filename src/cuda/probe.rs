//! Device discovery. No GPU is a normal state: every way CUDA can be missing
//! (no libcuda, a stub library, cuInit failing, zero devices, an old driver
//! whose symbols cudarc cannot bind) becomes a `Probe::Unavailable` with one
//! line saying why, never a panic.

use std::panic::{AssertUnwindSafe, catch_unwind};

use cudarc::driver::{result, sys};
use serde::Serialize;

/// What `dr devices` and every GPU entry point learn about this machine.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Probe {
    Ready {
        /// e.g. 13000 for CUDA 13.0, as cuDriverGetVersion reports it.
        driver_version: i32,
        devices: Vec<DeviceInfo>,
    },
    Unavailable {
        /// Why, e.g. "no CUDA driver found".
        reason: String,
        /// What to do about it, when there is something to do.
        fix: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (u32, u32),
    pub sm_count: u32,
    pub total_mem_bytes: u64,
    pub l2_bytes: u64,
    pub mem_clock_khz: u32,
    pub mem_bus_bits: u32,
    /// The SMs' peak clock (CU_DEVICE_ATTRIBUTE_CLOCK_RATE).
    pub sm_clock_khz: u32,
    /// Dense bf16 tensor-core peak (fp32 accumulation): NVIDIA's datasheet
    /// figure for the parts tabled in `datasheet_bf16_tflops`, else SM count
    /// x clock x the architecture's per-SM rate, where known.
    pub peak_bf16_tflops: Option<f64>,
    /// Where `peak_bf16_tflops` comes from, said with every "% of peak".
    pub peak_bf16_basis: Option<String>,
    /// The CPU stand-in for the CUDA driver (standin/), not a GPU: its
    /// kernels run correctly and no figure it gives is a measurement.
    pub stand_in: bool,
    pub pci_bus_id: String,
    /// Theoretical DRAM bandwidth (read + write), 2 x clock x bus width.
    pub peak_dram_gbps: Option<f64>,
    /// PCIe link as Linux reports it (absent in some VMs).
    pub pcie: Option<PcieLink>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PcieLink {
    pub gts: f64,
    pub width: u32,
    /// One direction, after 128b/130b (gen3+) or 8b/10b (gen1/2) encoding.
    pub peak_gbps: f64,
}

pub const NO_DRIVER: &str = "no CUDA driver found";

/// How the stand-in's devices are named (standin/src/driver.cpp).
pub const STAND_IN_NAME: &str = "dr CPU stand-in";

/// The label every timing figure gets on the stand-in.
pub const EMULATED: &str = "emulated, not a measurement";

impl DeviceInfo {
    pub fn arch(&self) -> String {
        format!(
            "sm_{}{}",
            self.compute_capability.0, self.compute_capability.1
        )
    }
}

/// Formats cuDriverGetVersion's number as "13.0".
pub fn driver_version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// Looks for libcuda and the devices behind it without creating a context.
pub fn probe() -> Probe {
    // SAFETY: only checks whether one of the library names can be opened.
    if !unsafe { sys::is_culib_present() } {
        return unavailable(NO_DRIVER.into(), None);
    }
    // cudarc panics when a symbol it expects is missing (a driver older than
    // the bindings): turn that into a message too.
    match catch_unwind(AssertUnwindSafe(probe_driver)) {
        Ok(Ok(p)) => p,
        Ok(Err((reason, fix))) => unavailable(reason, fix),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            unavailable(
                format!("the CUDA driver could not be used ({what})"),
                Some("install NVIDIA driver >= 580 (CUDA 13.0)".into()),
            )
        }
    }
}

fn unavailable(reason: String, fix: Option<String>) -> Probe {
    Probe::Unavailable { reason, fix }
}

type Unavailable = (String, Option<String>);

fn probe_driver() -> Result<Probe, Unavailable> {
    let failed = |what: &str, e: cudarc::driver::DriverError| {
        (format!("CUDA driver found but {what} failed ({e:?})"), None)
    };
    result::init().map_err(|e| {
        let (reason, _) = failed("cuInit", e);
        (
            reason,
            Some("check `nvidia-smi`; a container needs the GPU passed through".into()),
        )
    })?;
    let mut driver_version = 0;
    // SAFETY: writes one int.
    unsafe { sys::cuDriverGetVersion(&mut driver_version) }
        .result()
        .map_err(|e| failed("cuDriverGetVersion", e))?;
    let count = result::device::get_count().map_err(|e| failed("cuDeviceGetCount", e))?;
    if count == 0 {
        return Err((
            format!(
                "CUDA driver {} found but no CUDA device",
                driver_version_string(driver_version)
            ),
            None,
        ));
    }
    let devices = (0..count as usize)
        .map(device_info)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed("reading device properties", e))?;
    Ok(Probe::Ready {
        driver_version,
        devices,
    })
}

fn device_info(ordinal: usize) -> Result<DeviceInfo, cudarc::driver::DriverError> {
    use sys::CUdevice_attribute as A;
    let dev = result::device::get(ordinal as i32)?;
    // SAFETY: `dev` came from cuDeviceGet above.
    let attr = |a: A| unsafe { result::device::get_attribute(dev, a) };
    let mem_clock_khz = attr(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)? as u32;
    let mem_bus_bits = attr(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)? as u32;
    let pci_bus_id = format!(
        "{:04x}:{:02x}:{:02x}.0",
        attr(A::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?,
        attr(A::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?,
        attr(A::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?
    );
    let peak_dram_gbps = (mem_clock_khz > 0 && mem_bus_bits > 0)
        .then(|| 2.0 * mem_clock_khz as f64 * 1e3 * (mem_bus_bits / 8) as f64 / 1e9);
    let sm_count = attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32;
    let sm_clock_khz = attr(A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)? as u32;
    let cc = (
        attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)? as u32,
        attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)? as u32,
    );
    let name = result::device::get_name(dev)?;
    let peak = bf16_peak(&name, cc, sm_count, sm_clock_khz);
    Ok(DeviceInfo {
        ordinal,
        stand_in: name.starts_with(STAND_IN_NAME),
        name,
        compute_capability: cc,
        sm_count,
        sm_clock_khz,
        peak_bf16_tflops: peak.as_ref().map(|p| p.0),
        peak_bf16_basis: peak.map(|p| p.1),
        // SAFETY: as above.
        total_mem_bytes: unsafe { result::device::total_mem(dev)? } as u64,
        l2_bytes: attr(A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)? as u64,
        mem_clock_khz,
        mem_bus_bits,
        pcie: pcie_link(&pci_bus_id),
        pci_bus_id,
        peak_dram_gbps,
    })
}

/// Dense bf16 tensor-core FLOP per SM per clock with fp32 accumulation:
/// A100 (sm_80) 312 TFLOPS = 108 SMs x 1.41 GHz x 2048; H100/H200 (sm_90)
/// 989 TFLOPS = 132 x 1.83 GHz x 4096. Others are not tabled here.
pub fn bf16_flops_per_sm_clock(cc: (u32, u32)) -> Option<f64> {
    match cc {
        (8, 0) => Some(2048.0),
        (9, 0) => Some(4096.0),
        _ => None,
    }
}

/// NVIDIA's datasheet dense bf16 peaks (without sparsity), TFLOPS, for the
/// parts dr is measured on, by the name the driver reports. The clock the
/// driver reports (CU_DEVICE_ATTRIBUTE_CLOCK_RATE) is the maximum boost,
/// about 1.98 GHz on an H100 SXM, which would put its peak at ~1070 rather
/// than the 989 NVIDIA specifies.
pub fn datasheet_bf16_tflops(name: &str) -> Option<f64> {
    let n = name.to_ascii_uppercase();
    if n.contains("H100") || n.contains("H200") || n.contains("GH200") {
        if n.contains("PCIE") {
            Some(756.0)
        } else if n.contains("NVL") {
            Some(835.0)
        } else {
            Some(989.4) // SXM: "NVIDIA H100 80GB HBM3", "NVIDIA H200"
        }
    } else if n.contains("A100") {
        Some(312.0)
    } else {
        None
    }
}

/// The dense bf16 peak and the words saying where it comes from.
fn bf16_peak(name: &str, cc: (u32, u32), sms: u32, clock_khz: u32) -> Option<(f64, String)> {
    if let Some(t) = datasheet_bf16_tflops(name) {
        return Some((
            t,
            format!("NVIDIA's dense bf16 datasheet figure for {name}"),
        ));
    }
    let per_clock = bf16_flops_per_sm_clock(cc)?;
    let t = per_clock * sms as f64 * clock_khz as f64 * 1e3 / 1e12;
    Some((
        t,
        format!(
            "{sms} SMs x {per_clock} FLOP/clock x {:.2} GHz (the reported boost clock: an upper bound)",
            clock_khz as f64 / 1e6
        ),
    ))
}

/// Reads the negotiated link from sysfs ("32.0 GT/s PCIe", "16").
fn pcie_link(bus_id: &str) -> Option<PcieLink> {
    let dir = std::path::Path::new("/sys/bus/pci/devices").join(bus_id);
    let speed = std::fs::read_to_string(dir.join("current_link_speed")).ok()?;
    let width = std::fs::read_to_string(dir.join("current_link_width")).ok()?;
    parse_pcie(&speed, &width)
}

pub(crate) fn parse_pcie(speed: &str, width: &str) -> Option<PcieLink> {
    let gts: f64 = speed.split_whitespace().next()?.parse().ok()?;
    let width: u32 = width.trim().parse().ok()?;
    if gts <= 0.0 || width == 0 {
        return None;
    }
    let efficiency = if gts >= 8.0 { 128.0 / 130.0 } else { 0.8 };
    Some(PcieLink {
        gts,
        width,
        peak_gbps: gts * width as f64 * efficiency / 8.0,
    })
}

impl Probe {
    /// The `dr devices` table, or the one line saying why there is none.
    pub fn render(&self) -> String {
        match self {
            Probe::Unavailable { reason, fix } => {
                let mut s = format!("{reason}: using the CPU backend\n");
                if let Some(fix) = fix {
                    s.push_str(&format!("Fix: {fix}\n"));
                }
                s
            }
            Probe::Ready {
                driver_version,
                devices,
            } => {
                let mut s = format!(
                    "CUDA driver {} ({} device{})\n",
                    driver_version_string(*driver_version),
                    devices.len(),
                    if devices.len() == 1 { "" } else { "s" }
                );
                s.push_str(&format!(
                    "{:>3}  {:<28} {:>6} {:>5} {:>9} {:>8} {:>10}  {:<14} {}\n",
                    "id", "name", "arch", "SMs", "memory", "L2", "DRAM peak", "PCIe", "bus"
                ));
                for d in devices {
                    let pcie = d
                        .pcie
                        .as_ref()
                        .map_or("-".into(), |p| format!("{:.0}GT/s x{}", p.gts, p.width));
                    let peak = d
                        .peak_dram_gbps
                        .map_or("-".into(), |g| format!("{g:.0} GB/s"));
                    if d.stand_in {
                        s.push_str(&format!(
                            "{:>3}  {} is the CPU stand-in for the CUDA driver (standin/, on LD_LIBRARY_PATH): \
                             dr's kernels run on the CPU to check them; nothing it times is a GPU measurement\n",
                            d.ordinal, d.name
                        ));
                        continue;
                    }
                    s.push_str(&format!(
                        "{:>3}  {:<28} {:>6} {:>5} {:>6.1}GiB {:>5}MiB {:>10}  {:<14} {}\n",
                        d.ordinal,
                        d.name,
                        d.arch(),
                        d.sm_count,
                        d.total_mem_bytes as f64 / (1u64 << 30) as f64,
                        d.l2_bytes >> 20,
                        peak,
                        pcie,
                        d.pci_bus_id
                    ));
                }
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcie_gen5_x16_is_63_gbps() {
        let l = parse_pcie("32.0 GT/s PCIe\n", "16\n").unwrap();
        assert!((l.peak_gbps - 63.0).abs() < 0.1, "{}", l.peak_gbps);
        let l = parse_pcie("5.0 GT/s PCIe", "8").unwrap();
        assert!((l.peak_gbps - 4.0).abs() < 1e-9);
        assert!(parse_pcie("Unknown", "16").is_none());
        assert!(parse_pcie("8.0 GT/s", "0").is_none());
    }

    #[test]
    fn bf16_peaks_are_the_datasheets_and_say_so() {
        // The driver's boost clock would give 132 x 4096 x 1.98 GHz = 1070.
        let (t, basis) = bf16_peak("NVIDIA H100 80GB HBM3", (9, 0), 132, 1_980_000).unwrap();
        assert_eq!(t, 989.4);
        assert!(basis.contains("datasheet"), "{basis}");
        assert_eq!(datasheet_bf16_tflops("NVIDIA H200"), Some(989.4));
        assert_eq!(datasheet_bf16_tflops("NVIDIA H100 PCIe"), Some(756.0));
        assert_eq!(datasheet_bf16_tflops("NVIDIA A100-SXM4-80GB"), Some(312.0));
        // Unknown part of a known architecture: computed, with the basis named.
        let (t, basis) = bf16_peak("Some sm_90 part", (9, 0), 100, 1_500_000).unwrap();
        assert!((t - 614.4).abs() < 1e-9, "{t}");
        assert!(
            basis.contains("100 SMs") && basis.contains("upper bound"),
            "{basis}"
        );
        assert!(bf16_peak("NVIDIA RTX A6000", (8, 6), 84, 1_800_000).is_none());
    }

    #[test]
    fn driver_version_formats() {
        assert_eq!(driver_version_string(13000), "13.0");
        assert_eq!(driver_version_string(12040), "12.4");
    }

    #[test]
    fn probe_never_panics() {
        // Whatever this machine has, probing answers.
        match probe() {
            Probe::Ready { devices, .. } => assert!(!devices.is_empty()),
            p @ Probe::Unavailable { .. } => {
                assert!(p.render().contains(": using the CPU backend"))
            }
        }
    }
}
