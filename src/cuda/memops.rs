//! Launchers for kernels/memops.cu (device copy and fill) and their CPU twins.

use super::error::{CudaError, Result};
use super::gpu::{DevBuf, Stream};
use super::kernels::memops::{COPY_BYTES, FILL_U32, THREADS};
use super::launch::LaunchShape;
use super::region::Region;

/// Grid-stride kernels need only enough blocks to fill every SM.
fn shape(stream: &Stream, work: u64) -> LaunchShape {
    let max_blocks = stream.gpu().info().sm_count * 8;
    LaunchShape::grid_stride(work, THREADS, max_blocks)
}

/// dst[..src.len()] = src, on the device.
pub fn copy_bytes(stream: &Stream, src: &DevBuf<u8>, dst: &mut DevBuf<u8>) -> Result<()> {
    let n = src.len();
    if n > dst.len() {
        return Err(CudaError::Invalid(format!(
            "copy_bytes: source has {n} bytes, destination {}",
            dst.len()
        )));
    }
    stream.launch(
        &COPY_BYTES,
        shape(stream, n as u64 / 32),
        (src, dst, n as u64),
    )
}

/// `dst[..src.len()] = src` between regions (the executor's planned
/// memory), with the same kernel.
pub fn copy_region<T>(stream: &Stream, src: Region<T>, dst: Region<T>) -> Result<()> {
    if src.len() > dst.len() {
        return Err(CudaError::Invalid(format!(
            "copy_region: source has {} elements, destination {}",
            src.len(),
            dst.len()
        )));
    }
    let (s, d) = (src.bytes(), dst.bytes());
    let n = s.len() as u64;
    stream.launch(&COPY_BYTES, shape(stream, n / 32), (s, d, n))
}

/// dst[..] = value, on the device.
pub fn fill_u32(stream: &Stream, dst: &mut DevBuf<u32>, value: u32) -> Result<()> {
    let n = dst.len() as u64;
    stream.launch(&FILL_U32, shape(stream, n / 4), (dst, value, n))
}

/// CPU twins: the specification of the kernels above.
pub mod cpu {
    pub fn copy_bytes(src: &[u8], dst: &mut [u8]) {
        dst[..src.len()].copy_from_slice(src);
    }

    pub fn fill_u32(dst: &mut [u32], value: u32) {
        dst.fill(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::testing::{gpu_or_skip, random_bytes};

    /// Lengths around the 16-byte vector width and the grid size, and odd ones.
    const LENGTHS: &[usize] = &[1, 3, 15, 16, 17, 255, 4096, 4099, 1 << 20, (1 << 22) + 7];

    #[test]
    fn copy_matches_cpu_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        for (i, &n) in LENGTHS.iter().enumerate() {
            let src_host = random_bytes(n, 1000 + i as u64);
            // Poison the destination so an unwritten byte shows.
            let mut expect = vec![0xA5u8; n + 5];
            cpu::copy_bytes(&src_host, &mut expect);
            let mut src = gpu.alloc::<u8>(n).unwrap();
            let mut dst = gpu.alloc::<u8>(n + 5).unwrap();
            s.upload(&src_host, &mut src).unwrap();
            s.upload(&vec![0xA5u8; n + 5], &mut dst).unwrap();
            copy_bytes(&s, &src, &mut dst).unwrap();
            let mut got = vec![0u8; n + 5];
            s.download(&dst, &mut got).unwrap();
            s.synchronize().unwrap();
            assert!(
                got == expect,
                "copy_bytes differs from the CPU twin at n={n} (tolerance: exact)"
            );
        }
    }

    /// Regions of u16 at element offsets (the executor's arena): the
    /// elements land where the twin puts them, nothing around them moves.
    #[test]
    fn copy_region_matches_cpu_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        let host: Vec<u16> = random_bytes(2 * 5000, 7)
            .chunks(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        for (from, to, n) in [(0, 0, 5000), (128, 256, 3000), (3, 1001, 777)] {
            let src = s.to_device(&host).unwrap();
            let dst = s.to_device(&vec![0xA5A5u16; 6000]).unwrap();
            let (sr, dr) = (
                src.region(&s, from..from + n).unwrap(),
                dst.region(&s, to..to + n).unwrap(),
            );
            copy_region(&s, sr, dr).unwrap();
            let mut want = vec![0xA5A5u16; 6000];
            want[to..to + n].copy_from_slice(&host[from..from + n]);
            assert!(
                s.to_host(&dst).unwrap() == want,
                "copy_region {from}->{to} x{n} (tolerance: exact)"
            );
        }
        let src = s.to_device(&host).unwrap();
        let r = src.region(&s, 0..10).unwrap();
        let e = copy_region(&s, r, r.prefix(5).unwrap()).unwrap_err();
        assert!(e.to_string().contains("10 elements"), "{e}");
    }

    #[test]
    fn fill_matches_cpu_twin() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(1);
        for (i, &n) in LENGTHS.iter().enumerate() {
            let value = 0x9E37_79B9u32.wrapping_mul(i as u32 + 1);
            let mut expect = vec![0u32; n];
            cpu::fill_u32(&mut expect, value);
            let mut dst = gpu.alloc::<u32>(n).unwrap();
            s.upload(&vec![0xDEAD_BEEFu32; n], &mut dst).unwrap();
            fill_u32(&s, &mut dst, value).unwrap();
            let mut got = vec![0u32; n];
            s.download(&dst, &mut got).unwrap();
            s.synchronize().unwrap();
            assert!(
                got == expect,
                "fill_u32 differs from the CPU twin at n={n} (tolerance: exact)"
            );
        }
    }

    #[test]
    fn copy_refuses_a_short_destination() {
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(0);
        let src = gpu.alloc::<u8>(64).unwrap();
        let mut dst = gpu.alloc::<u8>(32).unwrap();
        let e = copy_bytes(&s, &src, &mut dst).unwrap_err().to_string();
        assert!(e.contains("64") && e.contains("32"), "{e}");
    }

    #[test]
    fn every_declared_kernel_loads() {
        let Some(gpu) = gpu_or_skip() else { return };
        let n = gpu.load_all_kernels().unwrap();
        assert!(n >= 2);
    }

    #[test]
    fn pinned_round_trip_reuses_buffers() {
        use crate::cuda::pinned::PinnedKind;
        let Some(gpu) = gpu_or_skip() else { return };
        let s = gpu.stream(2);
        let data = random_bytes(300_000, 7);
        let mut dev = gpu.alloc::<u8>(data.len()).unwrap();
        for round in 0..3 {
            let mut up = gpu.pinned().take(PinnedKind::Upload, data.len()).unwrap();
            up.as_mut_slice().unwrap().copy_from_slice(&data);
            s.upload_pinned(&mut up, &mut dev).unwrap();
            let mut down = gpu.pinned().take(PinnedKind::Download, data.len()).unwrap();
            s.download_pinned(&dev, &mut down).unwrap();
            assert!(down.as_slice().unwrap() == &data[..], "round {round}");
            drop((up, down));
            assert_eq!(gpu.pinned().idle_count(), 2, "buffers return to the pool");
        }
    }
}
