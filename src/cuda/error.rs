//! Errors of the CUDA layer. Each says what failed, where, and what to do.

use cudarc::driver::DriverError;

pub type Result<T, E = CudaError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("{0}")]
    Unavailable(String),
    #[error(
        "this dr was built without nvcc, so it has no GPU kernels. \
         Fix: run scripts/setup-cuda.sh, then rebuild (cargo build --release)"
    )]
    NoKernels,
    #[error("CUDA device {ordinal} does not exist: {count} device(s) found (see `dr devices`)")]
    NoSuchDevice { ordinal: usize, count: usize },
    #[error("{what} on device {ordinal}: {source}")]
    Driver {
        what: String,
        ordinal: usize,
        #[source]
        source: DriverError,
    },
    #[error("loading kernel family `{family}` on {device}: {detail}")]
    ModuleLoad {
        family: &'static str,
        device: String,
        detail: String,
    },
    #[error("kernel `{kernel}` grid {grid:?} block {block:?} shared {smem} B: {detail}")]
    Launch {
        kernel: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        smem: u32,
        detail: String,
    },
    #[error("{0}")]
    Invalid(String),
}

impl CudaError {
    /// The driver ran out of device memory (an allocation, or a launch or
    /// graph that needed memory).
    pub fn is_out_of_memory(&self) -> bool {
        matches!(
            self,
            CudaError::Driver { source, .. }
                if source.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY
        )
    }

    /// Whether `e` (any error chain) is a device out-of-memory.
    pub fn in_chain_is_out_of_memory(e: &anyhow::Error) -> bool {
        e.chain().any(|c| {
            c.downcast_ref::<CudaError>()
                .is_some_and(|c| c.is_out_of_memory())
        })
    }
}

/// Attach what was being done to a driver error.
pub(crate) trait DriverContext<T> {
    fn during(self, what: impl FnOnce() -> String, ordinal: usize) -> Result<T>;
}

impl<T> DriverContext<T> for std::result::Result<T, DriverError> {
    fn during(self, what: impl FnOnce() -> String, ordinal: usize) -> Result<T> {
        self.map_err(|source| CudaError::Driver {
            what: what(),
            ordinal,
            source,
        })
    }
}
