//! Pinned (page-locked) host buffers, pooled: allocating pinned memory costs
//! milliseconds and serialises the driver, so buffers are taken from and
//! returned to a per-context pool and reused across batches.
//!
//! Upload buffers are write-combined (fast for the host to fill and for the
//! copy engine to read, very slow for the host to read back); download buffers
//! are ordinary cached pinned memory.

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaEvent, PinnedHostSlice, sys};

use super::error::{DriverContext, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinnedKind {
    /// Host writes, device reads (write-combined).
    Upload,
    /// Device writes, host reads.
    Download,
}

/// Smallest allocation; requests are rounded up to a power of two from here,
/// so a buffer can serve any request up to its size and at least half of it.
const MIN_BYTES: usize = 64 << 10;

pub struct PinnedPool {
    shared: Arc<PoolShared>,
}

struct PoolShared {
    ctx: Arc<CudaContext>,
    free: Mutex<Vec<(PinnedKind, PinnedHostSlice<u8>)>>,
}

/// A pinned buffer of `len` bytes; goes back to its pool on drop, after any
/// copy still reading or writing it has finished.
pub struct PinnedBuf {
    mem: Option<PinnedHostSlice<u8>>,
    len: usize,
    kind: PinnedKind,
    pub(crate) pending: Option<CudaEvent>,
    shared: Arc<PoolShared>,
}

impl PinnedPool {
    pub(crate) fn new(ctx: Arc<CudaContext>) -> Self {
        PinnedPool {
            shared: Arc::new(PoolShared {
                ctx,
                free: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A buffer of `len` bytes, reused when one of the right kind and size is free.
    pub fn take(&self, kind: PinnedKind, len: usize) -> Result<PinnedBuf> {
        let capacity = len.max(MIN_BYTES).next_power_of_two();
        let reused = {
            let mut free = self.shared.free.lock().unwrap();
            free.iter()
                .position(|(k, m)| *k == kind && m.len() == capacity)
                .map(|i| free.swap_remove(i).1)
        };
        let mem = match reused {
            Some(m) => m,
            None => {
                let flags = match kind {
                    PinnedKind::Upload => sys::CU_MEMHOSTALLOC_WRITECOMBINED,
                    PinnedKind::Download => 0,
                };
                let ordinal = self.shared.ctx.ordinal();
                // SAFETY: u8 has no invalid bit patterns; the contents are
                // unspecified until written, which callers are told.
                unsafe {
                    self.shared
                        .ctx
                        .alloc_pinned_with_flags::<u8>(capacity, flags)
                }
                .during(
                    || format!("allocating {capacity} bytes of pinned host memory"),
                    ordinal,
                )?
            }
        };
        Ok(PinnedBuf {
            mem: Some(mem),
            len,
            kind,
            pending: None,
            shared: self.shared.clone(),
        })
    }

    /// Buffers waiting for reuse.
    pub fn idle_count(&self) -> usize {
        self.shared.free.lock().unwrap().len()
    }
}

impl PinnedBuf {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn kind(&self) -> PinnedKind {
        self.kind
    }

    fn wait_pending(&mut self) -> Result<()> {
        if let Some(ev) = self.pending.take() {
            let ordinal = self.shared.ctx.ordinal();
            ev.synchronize()
                .during(|| "waiting for a copy of a pinned buffer".into(), ordinal)?;
        }
        Ok(())
    }

    /// The bytes, after any copy in flight has finished. Reading an upload
    /// buffer this way is correct but slow (write-combined memory).
    pub fn as_slice(&mut self) -> Result<&[u8]> {
        self.wait_pending()?;
        let ordinal = self.shared.ctx.ordinal();
        let s = self
            .mem
            .as_ref()
            .unwrap()
            .as_slice()
            .during(|| "reading a pinned buffer".into(), ordinal)?;
        Ok(&s[..self.len])
    }

    /// The bytes for writing, after any copy in flight has finished.
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8]> {
        self.wait_pending()?;
        let ordinal = self.shared.ctx.ordinal();
        let len = self.len;
        let s = self
            .mem
            .as_mut()
            .unwrap()
            .as_mut_slice()
            .during(|| "writing a pinned buffer".into(), ordinal)?;
        Ok(&mut s[..len])
    }
}

impl Drop for PinnedBuf {
    fn drop(&mut self) {
        // A buffer whose copy cannot be waited for is not reused: freeing it
        // (PinnedHostSlice's drop) waits on the driver instead.
        if self.wait_pending().is_err() {
            return;
        }
        if let Some(mem) = self.mem.take() {
            self.shared.free.lock().unwrap().push((self.kind, mem));
        }
    }
}
