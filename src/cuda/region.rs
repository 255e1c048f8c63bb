//! Regions of device buffers by address, for an executor that plans its own
//! memory: one arena holds every activation, and a launch reads some regions
//! of it while writing another, which borrowed slices cannot express. A
//! `Region` is a typed (address, length) pair; whoever makes one keeps the
//! buffer alive and orders the work touching it on one stream (cudarc's
//! per-buffer events do not see regions). Also the capture of a stream's work
//! as a CUDA graph, replayed with one launch.

use std::marker::PhantomData;
use std::ops::Range;

use cudarc::driver::{CudaGraph, DevicePtr, sys};

use super::error::{CudaError, DriverContext, Result};
use super::gpu::{DevBuf, Stream};

/// Elements `range` of a device buffer, by address.
pub struct Region<T> {
    pub(crate) addr: u64,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> Clone for Region<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Region<T> {}

impl<T> std::fmt::Debug for Region<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Region({:#x}, {} x {} B)",
            self.addr,
            self.len,
            size_of::<T>()
        )
    }
}

impl<T> Region<T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the region starts on a multiple of `bytes` (vector loads).
    pub fn is_aligned(&self, bytes: u64) -> bool {
        self.addr.is_multiple_of(bytes)
    }

    /// The same memory as bytes.
    pub fn bytes(&self) -> Region<u8> {
        Region {
            addr: self.addr,
            len: self.len * size_of::<T>(),
            _t: PhantomData,
        }
    }

    /// No memory: the argument for an optional input a kernel does not
    /// read (attention without a bias).
    pub fn null() -> Region<T> {
        Region {
            addr: 0,
            len: 0,
            _t: PhantomData,
        }
    }

    /// The first `n` elements.
    pub fn prefix(&self, n: usize) -> Result<Region<T>> {
        self.sub(0..n)
    }

    /// Elements `range` of this region: address arithmetic only, so an
    /// executor can make its launch arguments during a graph capture.
    pub fn sub(&self, range: Range<usize>) -> Result<Region<T>> {
        if range.start > range.end || range.end > self.len {
            return Err(CudaError::Invalid(format!(
                "elements {range:?} of a region of {}",
                self.len
            )));
        }
        Ok(Region {
            addr: self.addr + (range.start * size_of::<T>()) as u64,
            len: range.len(),
            _t: PhantomData,
        })
    }
}

impl<T> DevBuf<T> {
    /// Elements `range` of this buffer as a region (checked against its length).
    pub fn region(&self, stream: &Stream, range: Range<usize>) -> Result<Region<T>> {
        if range.start > range.end || range.end > self.len() {
            return Err(CudaError::Invalid(format!(
                "region {range:?} of a buffer of {}",
                self.len()
            )));
        }
        let (base, _sync) = self.slice.device_ptr(stream.raw());
        Ok(Region {
            addr: base + (range.start * size_of::<T>()) as u64,
            len: range.len(),
            _t: PhantomData,
        })
    }
}

/// A stream's captured work, replayed by `launch` on that stream.
pub struct Graph {
    raw: CudaGraph,
    ordinal: usize,
}

// SAFETY: the driver's graph objects may be used from any thread but not
// from two at once. A `Graph` is owned (not Sync): whoever holds it, one
// thread at a time (behind a Mutex in the pipeline), is the only caller.
unsafe impl Send for Graph {}

impl Stream {
    /// Runs `work` under stream capture and instantiates what it queued.
    /// Work in the capture must not allocate, copy from pageable memory,
    /// synchronize or touch cudarc-tracked buffers (their events): pass
    /// `Region`s made beforehand, and load the kernels' modules first (an
    /// eager run before the capture does).
    pub fn capture(&self, work: impl FnOnce(&Stream) -> Result<()>) -> Result<Graph> {
        let ordinal = self.gpu().ordinal();
        self.raw()
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .during(|| "beginning a graph capture".into(), ordinal)?;
        let queued = work(self);
        let ended = self
            .raw()
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .during(|| "ending a graph capture".into(), ordinal);
        queued?;
        let raw = ended?.ok_or_else(|| CudaError::Invalid("the capture queued no work".into()))?;
        Ok(Graph { raw, ordinal })
    }
}

impl Graph {
    /// Queues one replay of the captured work on its stream.
    pub fn launch(&self) -> Result<()> {
        self.raw
            .launch()
            .during(|| "launching a CUDA graph".into(), self.ordinal)
    }
}
