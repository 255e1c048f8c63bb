//! Typed kernel launches: a launcher passes a tuple whose element types must
//! match the kernel's declared signature (`kernels.rs`), and gets back an
//! error naming the kernel and its launch shape if the launch is refused.

use cudarc::driver::{LaunchArgs, LaunchConfig, PushKernelArg};

use super::error::{CudaError, Result};
use super::gpu::DevBuf;
use super::kernels::attention::AttnParams;
use super::kernels::conv::ConvParams;
use super::kernels::layout::CopyParams;
use super::kernels::pool::PoolParams;
use super::kernels::{In, Out};
use super::region::Region;
use super::tma::TensorMap;

/// Grid, block and dynamic shared memory of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchShape {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
}

impl LaunchShape {
    /// One thread per item: a 1-D grid of ceil(`work` / `threads`) blocks,
    /// or an error naming `what` when that exceeds the grid's limit.
    pub fn per_item(work: usize, threads: u32, what: &str) -> Result<Self> {
        let blocks = u32::try_from(work.div_ceil(threads as usize).max(1))
            .ok()
            .filter(|&b| b < 1 << 31)
            .ok_or_else(|| CudaError::Invalid(format!("{what}: {work} items in one launch")))?;
        Ok(LaunchShape {
            grid: (blocks, 1, 1),
            block: (threads, 1, 1),
            shared_bytes: 0,
        })
    }

    /// A 1-D grid-stride launch over `work` items with `threads` a block, at most
    /// `max_blocks` blocks (grid-stride kernels need no more than fill the GPU).
    pub fn grid_stride(work: u64, threads: u32, max_blocks: u32) -> Self {
        let blocks = work
            .div_ceil(threads as u64)
            .clamp(1, max_blocks.max(1) as u64) as u32;
        LaunchShape {
            grid: (blocks, 1, 1),
            block: (threads, 1, 1),
            shared_bytes: 0,
        }
    }

    /// Refuses shapes the hardware rejects, before the driver does it with a
    /// bare error code.
    pub(crate) fn check(&self, kernel: &'static str) -> Result<()> {
        let (bx, by, bz) = self.block;
        let (gx, gy, gz) = self.grid;
        let problem = if [bx, by, bz, gx, gy, gz].contains(&0) {
            Some("a zero dimension")
        } else if bx as u64 * by as u64 * bz as u64 > 1024 {
            Some("more than 1024 threads a block")
        } else if bz > 64 {
            Some("block z above 64")
        } else if gy > 65535 || gz > 65535 {
            Some("grid y or z above 65535")
        } else if gx > i32::MAX as u32 {
            Some("grid x above 2^31-1")
        } else {
            None
        };
        match problem {
            Some(p) => Err(self.error(kernel, format!("invalid launch shape: {p}"))),
            None => Ok(()),
        }
    }

    pub(crate) fn error(&self, kernel: &'static str, detail: String) -> CudaError {
        CudaError::Launch {
            kernel,
            grid: self.grid,
            block: self.block,
            smem: self.shared_bytes,
            detail,
        }
    }

    pub(crate) fn config(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: self.grid,
            block_dim: self.block,
            shared_mem_bytes: self.shared_bytes,
        }
    }
}

/// One argument that can stand where a kernel expects kind `K`.
pub trait Arg<K> {
    fn push_into<'a>(&'a mut self, b: &mut LaunchArgs<'a>);
}

impl<T> Arg<In<T>> for &DevBuf<T> {
    fn push_into<'a>(&'a mut self, b: &mut LaunchArgs<'a>) {
        b.arg(&self.slice);
    }
}

impl<T> Arg<Out<T>> for &mut DevBuf<T> {
    fn push_into<'a>(&'a mut self, b: &mut LaunchArgs<'a>) {
        b.arg(&mut self.slice);
    }
}

// A region stands for its buffer's pointer: the address pushed as a u64,
// which the kernel reads as `const T*` / `T*`.
impl<T> Arg<In<T>> for Region<T> {
    fn push_into<'a>(&'a mut self, b: &mut LaunchArgs<'a>) {
        b.arg(&self.addr);
    }
}

impl<T> Arg<Out<T>> for Region<T> {
    fn push_into<'a>(&'a mut self, b: &mut LaunchArgs<'a>) {
        b.arg(&self.addr);
    }
}

macro_rules! scalar_args {
    ($($t:ty),*) => {$(
        impl Arg<$t> for $t {
            fn push_into<'a>(&'a mut self, b: &mut LaunchArgs<'a>) {
                b.arg(&*self);
            }
        }
    )*};
}
scalar_args!(
    u8, u16, u32, u64, i32, i64, f32, ConvParams, PoolParams, AttnParams, CopyParams, TensorMap
);

// SAFETY: all are #[repr(C)], plain 32- and 64-bit fields with no padding,
// and their sizes are asserted equal to the .cu's structs on both sides.
unsafe impl cudarc::driver::DeviceRepr for ConvParams {}
unsafe impl cudarc::driver::DeviceRepr for PoolParams {}
unsafe impl cudarc::driver::DeviceRepr for AttnParams {}
unsafe impl cudarc::driver::DeviceRepr for CopyParams {}

/// A whole argument list matching signature `S`.
pub trait ArgList<S> {
    fn push_all<'a>(&'a mut self, b: &mut LaunchArgs<'a>);
}

macro_rules! arg_lists {
    ($(($($k:ident $a:ident $i:tt),+)),* $(,)?) => {$(
        impl<$($k, $a: Arg<$k>),+> ArgList<($($k,)+)> for ($($a,)+) {
            fn push_all<'a>(&'a mut self, b: &mut LaunchArgs<'a>) {
                $(self.$i.push_into(b);)+
            }
        }
    )*};
}
arg_lists!(
    (K0 A0 0),
    (K0 A0 0, K1 A1 1),
    (K0 A0 0, K1 A1 1, K2 A2 2),
    (K0 A0 0, K1 A1 1, K2 A2 2, K3 A3 3),
    (K0 A0 0, K1 A1 1, K2 A2 2, K3 A3 3, K4 A4 4),
    (K0 A0 0, K1 A1 1, K2 A2 2, K3 A3 3, K4 A4 4, K5 A5 5),
    (K0 A0 0, K1 A1 1, K2 A2 2, K3 A3 3, K4 A4 4, K5 A5 5, K6 A6 6),
    (K0 A0 0, K1 A1 1, K2 A2 2, K3 A3 3, K4 A4 4, K5 A5 5, K6 A6 6, K7 A7 7),
    (K0 A0 0, K1 A1 1, K2 A2 2, K3 A3 3, K4 A4 4, K5 A5 5, K6 A6 6, K7 A7 7, K8 A8 8),
    (K0 A0 0, K1 A1 1, K2 A2 2, K3 A3 3, K4 A4 4, K5 A5 5, K6 A6 6, K7 A7 7, K8 A8 8, K9 A9 9),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_stride_clamps() {
        let s = LaunchShape::grid_stride(10, 256, 1000);
        assert_eq!(s.grid, (1, 1, 1));
        let s = LaunchShape::grid_stride(1 << 40, 256, 1056);
        assert_eq!(s.grid, (1056, 1, 1));
        let s = LaunchShape::grid_stride(0, 256, 1056);
        assert_eq!(s.grid, (1, 1, 1));
        s.check("k").unwrap();
    }

    #[test]
    fn bad_shapes_name_the_kernel() {
        let s = LaunchShape {
            grid: (1, 1, 1),
            block: (2048, 1, 1),
            shared_bytes: 0,
        };
        let e = s.check("my_kernel").unwrap_err().to_string();
        assert!(
            e.contains("my_kernel") && e.contains("1024 threads") && e.contains("2048"),
            "{e}"
        );
        let s = LaunchShape {
            grid: (1, 70000, 1),
            block: (32, 1, 1),
            shared_bytes: 0,
        };
        assert!(s.check("k").is_err());
    }
}
