//! Reads ptxas's `-v` report (kept by build.rs for every family) so tests can
//! refuse kernels that spill registers or use local memory.

/// Resources of one entry point compiled for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelResources {
    pub name: String,
    pub arch: String,
    pub registers: u32,
    pub stack_bytes: u32,
    pub spill_store_bytes: u32,
    pub spill_load_bytes: u32,
}

impl KernelResources {
    /// Local memory of any kind: a stack frame or spills.
    pub fn uses_local_memory(&self) -> bool {
        self.stack_bytes > 0 || self.spill_store_bytes > 0 || self.spill_load_bytes > 0
    }
}

/// Parses lines such as
/// `ptxas info    : Compiling entry function 'fill_u32' for 'sm_80'`,
/// `    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads`,
/// `ptxas info    : Used 16 registers, used 0 barriers, 376 bytes cmem[0]`.
pub fn parse(report: &str) -> Vec<KernelResources> {
    let mut out = Vec::new();
    let mut current: Option<KernelResources> = None;
    for line in report.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            if let Some(k) = current.take() {
                out.push(k);
            }
            let mut parts = rest.split('\'');
            let name = parts.next().unwrap_or_default().to_owned();
            let arch = parts.nth(1).unwrap_or_default().to_owned();
            current = Some(KernelResources {
                name,
                arch,
                registers: 0,
                stack_bytes: 0,
                spill_store_bytes: 0,
                spill_load_bytes: 0,
            });
        } else if let Some(k) = current.as_mut() {
            if line.contains("bytes stack frame") {
                k.stack_bytes = number_before(line, "bytes stack frame");
                k.spill_store_bytes = number_before(line, "bytes spill stores");
                k.spill_load_bytes = number_before(line, "bytes spill loads");
            } else if line.contains("registers") && line.contains("Used ") {
                k.registers = number_after(line, "Used ");
            }
        }
    }
    out.extend(current);
    out
}

fn number_before(line: &str, marker: &str) -> u32 {
    line.split(marker)
        .next()
        .and_then(|head| head.rsplit([',', ' ']).find(|s| !s.is_empty()))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn number_after(line: &str, marker: &str) -> u32 {
    line.split(marker)
        .nth(1)
        .and_then(|tail| tail.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::kernels::{Family, KERNEL_TARGETS};

    const SAMPLE: &str = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'big' for 'sm_80'
ptxas info    : Function properties for big
    48 bytes stack frame, 40 bytes spill stores, 36 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 380 bytes cmem[0]
ptxas info    : Compiling entry function 'small' for 'sm_90a'
ptxas info    : Function properties for small
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 0 barriers
";

    #[test]
    fn parses_spills_and_registers() {
        let k = parse(SAMPLE);
        assert_eq!(k.len(), 2);
        assert_eq!(
            k[0],
            KernelResources {
                name: "big".into(),
                arch: "sm_80".into(),
                registers: 255,
                stack_bytes: 48,
                spill_store_bytes: 40,
                spill_load_bytes: 36
            }
        );
        assert!(k[0].uses_local_memory());
        assert_eq!(
            (k[1].name.as_str(), k[1].arch.as_str(), k[1].registers),
            ("small", "sm_90a", 10)
        );
        assert!(!k[1].uses_local_memory());
    }

    /// Kernels allowed to use local memory, each with the reason. Empty so far.
    const LOCAL_MEMORY_ALLOWED: &[(&str, &str)] = &[];

    #[test]
    fn no_kernel_spills_or_uses_local_memory() {
        let Some(targets) = KERNEL_TARGETS else {
            println!("skipped: built without nvcc (no ptxas report)");
            return;
        };
        let mut offenders = Vec::new();
        let mut seen = 0;
        for f in Family::ALL {
            let report = f.ptxas_report().expect("every family has a report");
            for k in parse(report) {
                seen += 1;
                if k.uses_local_memory() && !LOCAL_MEMORY_ALLOWED.iter().any(|(n, _)| *n == k.name)
                {
                    offenders.push(format!("{}/{} on {}: {:?}", f.name(), k.name, k.arch, k));
                }
            }
        }
        // Every SASS target contributes one report entry per kernel.
        let sass = targets.split(' ').filter(|t| t.starts_with("sm_")).count();
        assert!(
            seen >= sass,
            "ptxas report has {seen} entries for {sass} SASS targets"
        );
        assert!(
            offenders.is_empty(),
            "kernels using local memory:\n{}",
            offenders.join("\n")
        );
    }
}
