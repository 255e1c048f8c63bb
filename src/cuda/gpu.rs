//! One device: its context, a small pool of streams, the kernel modules loaded
//! from the embedded fatbins (once per context, on first use), device buffers,
//! events and the pinned host pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytemuck::Pod;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr,
    ValidAsZeroBits, sys,
};
use cudarc::nvrtc::Ptx;

use super::error::{CudaError, DriverContext, Result};
use super::kernels::{Family, KERNEL_TARGETS, Kernel, NVCC_VERSION};
use super::launch::{ArgList, LaunchShape};
use super::pinned::{PinnedBuf, PinnedPool};
use super::probe::{DeviceInfo, Probe, driver_version_string, probe};

/// Streams created with each context: compute, upload, download, spare.
const STREAMS: usize = 4;

#[derive(Clone)]
pub struct Gpu {
    inner: Arc<GpuInner>,
}

struct GpuInner {
    ctx: Arc<CudaContext>,
    info: DeviceInfo,
    driver_version: i32,
    modules: Vec<OnceLock<Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
    streams: Vec<Arc<CudaStream>>,
    pinned: PinnedPool,
}

/// An element type device buffers can hold (plain data the driver can copy).
pub trait DeviceElem: Pod + DeviceRepr {}
impl<T: Pod + DeviceRepr> DeviceElem for T {}

/// A typed device buffer, usable on every stream of its `Gpu` from its
/// allocation until it is dropped (see `Gpu::alloc`).
pub struct DevBuf<T> {
    pub(crate) slice: CudaSlice<T>,
    gpu: Gpu,
}

impl<T> Drop for DevBuf<T> {
    fn drop(&mut self) {
        // The free is queued on stream 0 (cudarc frees on the allocating
        // stream): it must come after the work every other stream has queued
        // so far, which may read the buffer through a `Region` that cudarc's
        // per-buffer events do not see. A failure here is a dead context,
        // which the next call reports.
        let _ = self.gpu.streams_before(0);
    }
}

impl<T> DevBuf<T> {
    pub fn len(&self) -> usize {
        self.slice.len()
    }
    pub fn is_empty(&self) -> bool {
        self.slice.len() == 0
    }
    pub fn bytes(&self) -> usize {
        self.slice.num_bytes()
    }
}

/// A stream of the device, through which all work is queued.
#[derive(Clone)]
pub struct Stream {
    raw: Arc<CudaStream>,
    gpu: Gpu,
}

/// A timing event recorded on a stream.
pub struct Event {
    raw: CudaEvent,
    ordinal: usize,
}

/// Whether a build with `targets` can run on a device of compute capability
/// `cc`: SASS for the same major and a minor at most the device's ("a"
/// variants only on their exact chip), or PTX of an older or equal version.
pub fn build_runs_on(targets: &str, cc: (u32, u32)) -> bool {
    let dev = cc.0 * 10 + cc.1;
    targets.split_whitespace().any(|t| {
        let (sass, num) = match (t.strip_prefix("sm_"), t.strip_prefix("compute_")) {
            (Some(n), _) => (true, n),
            (_, Some(n)) => (false, n),
            _ => return false,
        };
        let exact = num.ends_with(['a', 'f']);
        let Ok(v) = num.trim_end_matches(['a', 'f']).parse::<u32>() else {
            return false;
        };
        if exact {
            v == dev
        } else if sass {
            v / 10 == cc.0 && v <= dev
        } else {
            v <= dev
        }
    })
}

impl Gpu {
    /// Opens device `ordinal`: checks that this build has kernels for it and
    /// that the driver can load them, then creates its context and streams.
    pub fn open(ordinal: usize) -> Result<Gpu> {
        let Some(targets) = KERNEL_TARGETS else {
            return Err(CudaError::NoKernels);
        };
        let (driver_version, devices) = match probe() {
            Probe::Unavailable { reason, fix } => {
                let fix = fix.unwrap_or_else(|| {
                    "run on a machine with an NVIDIA GPU and driver >= 580 (see `dr devices`)"
                        .into()
                });
                return Err(CudaError::Unavailable(format!("{reason}. Fix: {fix}")));
            }
            Probe::Ready {
                driver_version,
                devices,
            } => (driver_version, devices),
        };
        let count = devices.len();
        let info = devices
            .into_iter()
            .nth(ordinal)
            .ok_or(CudaError::NoSuchDevice { ordinal, count })?;
        check_compatible(targets, &info, driver_version)?;
        let ctx = CudaContext::new(ordinal).during(|| "creating a context".into(), ordinal)?;
        let streams = (0..STREAMS)
            .map(|_| ctx.new_stream())
            .collect::<std::result::Result<Vec<_>, _>>()
            .during(|| "creating streams".into(), ordinal)?;
        Ok(Gpu {
            inner: Arc::new(GpuInner {
                pinned: PinnedPool::new(ctx.clone()),
                ctx,
                info,
                driver_version,
                modules: Family::ALL.iter().map(|_| OnceLock::new()).collect(),
                functions: Mutex::new(HashMap::new()),
                streams,
            }),
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.inner.info
    }

    pub fn ordinal(&self) -> usize {
        self.inner.info.ordinal
    }

    pub fn driver_version(&self) -> i32 {
        self.inner.driver_version
    }

    /// Stream `i` of the pool (wraps around).
    pub fn stream(&self, i: usize) -> Stream {
        Stream {
            raw: self.inner.streams[i % STREAMS].clone(),
            gpu: self.clone(),
        }
    }

    pub fn pinned(&self) -> &PinnedPool {
        &self.inner.pinned
    }

    pub fn synchronize(&self) -> Result<()> {
        self.inner
            .ctx
            .synchronize()
            .during(|| "synchronizing".into(), self.ordinal())
    }

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.inner
            .ctx
            .mem_get_info()
            .during(|| "reading memory info".into(), self.ordinal())
    }

    fn module(&self, family: Family) -> Result<Arc<CudaModule>> {
        let slot = &self.inner.modules[family.index()];
        if let Some(m) = slot.get() {
            return Ok(m.clone());
        }
        let fatbin = family.fatbin().ok_or(CudaError::NoKernels)?;
        let module = self
            .inner
            .ctx
            .load_module(Ptx::from_binary(fatbin.to_vec()))
            .map_err(|e| CudaError::ModuleLoad {
                family: family.name(),
                device: format!(
                    "device {} ({}, {})",
                    self.ordinal(),
                    self.info().name,
                    self.info().arch()
                ),
                detail: module_load_hint(e, self.inner.driver_version),
            })?;
        Ok(slot.get_or_init(|| module).clone())
    }

    /// The loaded entry point `name` of `family`, cached per context.
    pub(crate) fn function(&self, family: Family, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self.inner.functions.lock().unwrap().get(name) {
            return Ok(f.clone());
        }
        let f = self
            .module(family)?
            .load_function(name)
            .map_err(|e| CudaError::ModuleLoad {
                family: family.name(),
                device: format!("device {}", self.ordinal()),
                detail: format!(
                    "entry point `{name}` not found ({e:?}); kernels.rs and kernels/{}.cu disagree",
                    family.name()
                ),
            })?;
        self.inner.functions.lock().unwrap().insert(name, f.clone());
        Ok(f)
    }

    /// Loads every declared entry point of every family: the smoke test that
    /// a build's kernels match this device and driver.
    pub fn load_all_kernels(&self) -> Result<usize> {
        let mut n = 0;
        for &f in Family::ALL {
            for &name in f.entry_points() {
                self.function(f, name)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// An uninitialised buffer of `len` elements (any bit pattern is a valid
    /// `T`; contents are whatever the allocator left).
    ///
    /// The allocation is stream-ordered on stream 0 (cuMemAllocAsync), so
    /// every other stream of the pool is made to wait for it before the
    /// buffer is returned: the caller may use it on any of them. Without
    /// that, a first write on another stream could run before the memory
    /// exists (the stand-in's lazy streams catch exactly that).
    pub fn alloc<T: Pod + DeviceRepr>(&self, len: usize) -> Result<DevBuf<T>> {
        let s = &self.inner.streams[0];
        // SAFETY: T is Pod, so uninitialised device bytes are a valid T when read back.
        let slice = unsafe { s.alloc::<T>(len) }.during(
            || format!("allocating {len} x {} B", size_of::<T>()),
            self.ordinal(),
        )?;
        self.stream_before_others(0)?;
        Ok(DevBuf {
            slice,
            gpu: self.clone(),
        })
    }

    /// Makes every pool stream but `i` wait for the work queued on stream `i` so far.
    fn stream_before_others(&self, i: usize) -> Result<()> {
        let ev = self.inner.streams[i]
            .record_event(None)
            .during(|| "recording an allocation's event".into(), self.ordinal())?;
        for (j, s) in self.inner.streams.iter().enumerate() {
            if j != i {
                s.wait(&ev).during(
                    || "ordering a stream after an allocation".into(),
                    self.ordinal(),
                )?;
            }
        }
        Ok(())
    }

    /// Makes stream `i` wait for the work queued on every other pool stream so far.
    fn streams_before(&self, i: usize) -> Result<()> {
        for (j, s) in self.inner.streams.iter().enumerate() {
            if j != i {
                let ev = s
                    .record_event(None)
                    .during(|| "recording a free's event".into(), self.ordinal())?;
                self.inner.streams[i].wait(&ev).during(
                    || "ordering a free after other streams".into(),
                    self.ordinal(),
                )?;
            }
        }
        Ok(())
    }

    /// `buf`, reallocated with 25% headroom when it holds fewer than `len`
    /// elements: a buffer reused across batches grows to the largest and stays.
    pub fn ensure<'a, T: DeviceElem>(
        &self,
        buf: &'a mut Option<DevBuf<T>>,
        len: usize,
    ) -> Result<&'a mut DevBuf<T>> {
        if buf.as_ref().is_none_or(|b| b.len() < len) {
            *buf = None; // free first: the new one may need the room
            *buf = Some(self.alloc::<T>(with_headroom(len))?);
        }
        Ok(buf.as_mut().expect("just allocated"))
    }

    /// As `alloc`, the memory zeroed (on stream 0, before the other streams' next work).
    pub fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<DevBuf<T>> {
        let slice = self.inner.streams[0].alloc_zeros::<T>(len).during(
            || format!("allocating {len} x {} B", size_of::<T>()),
            self.ordinal(),
        )?;
        self.stream_before_others(0)?;
        Ok(DevBuf {
            slice,
            gpu: self.clone(),
        })
    }
}

/// Refuses, with the fix, a device this build's kernels cannot run on.
fn check_compatible(targets: &str, info: &DeviceInfo, driver_version: i32) -> Result<()> {
    let ordinal = info.ordinal;
    if info.compute_capability.0 < 8 {
        return Err(CudaError::Unavailable(format!(
            "device {ordinal} ({}) is {}: dr's kernels need compute capability 8.0 or newer (Ampere, Ada, Hopper, Blackwell)",
            info.name,
            info.arch()
        )));
    }
    if !build_runs_on(targets, info.compute_capability) {
        return Err(CudaError::Unavailable(format!(
            "this dr has kernels for `{targets}` only, none of which runs on device {ordinal} ({}, {}). \
             Fix: rebuild with DR_CUDA_ARCHS unset (all targets) or including {}",
            info.name,
            info.arch(),
            info.arch()
        )));
    }
    if let Some(need) = NVCC_VERSION.and_then(cuda_major)
        && driver_version / 1000 < need
    {
        return Err(CudaError::Unavailable(format!(
            "the NVIDIA driver supports CUDA {} but this dr's kernels were built with CUDA {}. \
             Fix: install a driver for CUDA {need}.x (>= 580 for 13.0), or rebuild with an nvcc the driver supports",
            driver_version_string(driver_version),
            NVCC_VERSION.unwrap_or("?")
        )));
    }
    Ok(())
}

fn cuda_major(v: &str) -> Option<i32> {
    v.split('.').next()?.parse().ok()
}

fn module_load_hint(e: cudarc::driver::DriverError, driver_version: i32) -> String {
    use sys::cudaError_enum as E;
    let hint = match e.0 {
        E::CUDA_ERROR_UNSUPPORTED_PTX_VERSION | E::CUDA_ERROR_INVALID_PTX => format!(
            "the driver (CUDA {}) is older than the nvcc ({}) that built the kernels. Fix: update the NVIDIA driver (>= 580 for CUDA 13.0)",
            driver_version_string(driver_version),
            NVCC_VERSION.unwrap_or("?")
        ),
        E::CUDA_ERROR_NO_BINARY_FOR_GPU => format!(
            "no kernel image for this GPU in `{}`. Fix: rebuild with DR_CUDA_ARCHS unset or naming this GPU's sm_XX",
            KERNEL_TARGETS.unwrap_or("")
        ),
        _ => "see the driver error".into(),
    };
    format!("{e:?}: {hint}")
}

/// Shared memory a block gets without opting in (48 KB on every target).
const STATIC_SHARED_LIMIT: u32 = 48 * 1024;

impl Stream {
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub(crate) fn raw(&self) -> &Arc<CudaStream> {
        &self.raw
    }

    fn ordinal(&self) -> usize {
        self.gpu.ordinal()
    }

    /// Queues `kernel` with `args`, whose types must match its declared signature.
    pub fn launch<S, A: ArgList<S>>(
        &self,
        kernel: &Kernel<S>,
        shape: LaunchShape,
        mut args: A,
    ) -> Result<()> {
        shape.check(kernel.name)?;
        let f = self
            .gpu
            .function(kernel.family, kernel.name)
            .map_err(|e| shape.error(kernel.name, e.to_string()))?;
        if shape.shared_bytes > STATIC_SHARED_LIMIT {
            // Dynamic shared memory above 48 KB is opt-in per function; the
            // driver refuses more than the device has (an error, named).
            f.set_attribute(
                cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                shape.shared_bytes as i32,
            )
            .map_err(|e| {
                shape.error(
                    kernel.name,
                    format!("{e:?}: this device has less shared memory a block than the kernel needs"),
                )
            })?;
        }
        let mut b = self.raw.launch_builder(&f);
        args.push_all(&mut b);
        // SAFETY: the argument tuple matches the signature declared for this
        // entry point in kernels.rs (enforced by ArgList<S>), and that
        // declaration mirrors the .cu (checked by the kernel's GPU test).
        // Buffers are borrowed for the call and their use is ordered by
        // cudarc's per-buffer events; a `Region` argument's buffer is kept
        // alive and its work ordered on one stream by whoever made it.
        unsafe { b.launch(shape.config()) }
            .map(|_| ())
            .map_err(|e| shape.error(kernel.name, format!("{e:?}")))
    }

    /// Host → device from ordinary (pageable) memory.
    pub fn upload<T: DeviceRepr>(&self, src: &[T], dst: &mut DevBuf<T>) -> Result<()> {
        check_len("upload", src.len(), dst.len())?;
        self.raw
            .memcpy_htod(src, &mut dst.slice.slice_mut(..src.len()))
            .during(
                || format!("uploading {} elements", src.len()),
                self.ordinal(),
            )
    }

    /// A new device buffer holding `src` (at least one element long).
    pub fn to_device<T: DeviceElem>(&self, src: &[T]) -> Result<DevBuf<T>> {
        let mut d = self.gpu.alloc::<T>(src.len().max(1))?;
        self.upload(src, &mut d)?;
        Ok(d)
    }

    /// `src` back on the host, after the work queued before (synchronizes).
    pub fn to_host<T: DeviceElem + Default + Clone>(&self, src: &DevBuf<T>) -> Result<Vec<T>> {
        let mut v = vec![T::default(); src.len()];
        self.download(src, &mut v)?;
        self.synchronize()?;
        Ok(v)
    }

    /// `src` into `dst`, reallocated first (as `Gpu::ensure` grows buffers)
    /// when it is too small: a buffer reused for every batch.
    pub fn refill<T: DeviceElem>(&self, src: &[T], dst: &mut DevBuf<T>) -> Result<()> {
        if dst.len() < src.len() {
            *dst = self.gpu.alloc::<T>(with_headroom(src.len()))?;
        }
        self.upload(src, dst)
    }

    /// Host → device into elements `at..at + src.len()` of `dst`.
    pub fn upload_at<T: DeviceRepr>(
        &self,
        src: &[T],
        dst: &mut DevBuf<T>,
        at: usize,
    ) -> Result<()> {
        check_len("upload", at + src.len(), dst.len())?;
        self.raw
            .memcpy_htod(src, &mut dst.slice.slice_mut(at..at + src.len()))
            .during(
                || format!("uploading {} elements", src.len()),
                self.ordinal(),
            )
    }

    /// Elements `at..at + dst.len()` of `src` → host.
    pub fn download_at<T: DeviceRepr>(
        &self,
        src: &DevBuf<T>,
        at: usize,
        dst: &mut [T],
    ) -> Result<()> {
        check_len("download", at + dst.len(), src.len())?;
        self.raw
            .memcpy_dtoh(&src.slice.slice(at..at + dst.len()), dst)
            .during(
                || format!("downloading {} elements", dst.len()),
                self.ordinal(),
            )
    }

    /// Device → host into ordinary (pageable) memory.
    pub fn download<T: DeviceRepr>(&self, src: &DevBuf<T>, dst: &mut [T]) -> Result<()> {
        check_len("download", src.len(), dst.len())?;
        self.raw.memcpy_dtoh(&src.slice, dst).during(
            || format!("downloading {} elements", src.len()),
            self.ordinal(),
        )
    }

    /// Host → device from a pinned buffer (asynchronous; the buffer is held
    /// until the copy completes).
    pub fn upload_pinned(&self, src: &mut PinnedBuf, dst: &mut DevBuf<u8>) -> Result<()> {
        check_len("upload", src.len(), dst.len())?;
        let n = src.len();
        let host = src.as_mut_slice()?;
        self.raw
            .memcpy_htod(&*host, &mut dst.slice.slice_mut(..n))
            .during(|| format!("uploading {n} pinned bytes"), self.ordinal())?;
        src.pending = Some(self.record_raw()?);
        Ok(())
    }

    /// The first `dst.len()` bytes of `src` → a pinned buffer (asynchronous;
    /// reading the buffer waits). `src` may be longer than `dst`.
    pub fn download_pinned(&self, src: &DevBuf<u8>, dst: &mut PinnedBuf) -> Result<()> {
        if dst.len() > src.len() {
            return Err(CudaError::Invalid(format!(
                "download: a pinned buffer of {} bytes cannot be filled from a device buffer of {}",
                dst.len(),
                src.len()
            )));
        }
        let n = dst.len();
        let host = dst.as_mut_slice()?;
        self.raw
            .memcpy_dtoh(&src.slice.slice(..n), &mut host[..n])
            .during(
                || format!("downloading {n} bytes to pinned memory"),
                self.ordinal(),
            )?;
        dst.pending = Some(self.record_raw()?);
        Ok(())
    }

    /// Device → device through the driver's copy (cuMemcpyDtoDAsync): the
    /// peer our copy kernel is measured against.
    pub fn copy_driver<T: DeviceRepr>(&self, src: &DevBuf<T>, dst: &mut DevBuf<T>) -> Result<()> {
        check_len("device copy", src.len(), dst.len())?;
        self.raw.memcpy_dtod(&src.slice, &mut dst.slice).during(
            || format!("copying {} device elements", src.len()),
            self.ordinal(),
        )
    }

    fn record_raw(&self) -> Result<CudaEvent> {
        self.raw
            .record_event(Some(sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC))
            .during(|| "recording an event".into(), self.ordinal())
    }

    /// Records a timing event after the work queued so far.
    pub fn record(&self) -> Result<Event> {
        let raw = self
            .raw
            .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .during(|| "recording a timing event".into(), self.ordinal())?;
        Ok(Event {
            raw,
            ordinal: self.ordinal(),
        })
    }

    /// Makes later work on this stream wait for `event`.
    pub fn wait(&self, event: &Event) -> Result<()> {
        self.raw
            .wait(&event.raw)
            .during(|| "waiting on an event".into(), self.ordinal())
    }

    pub fn synchronize(&self) -> Result<()> {
        self.raw.synchronize().during(
            || "synchronizing a stream (a failed kernel reports here)".into(),
            self.ordinal(),
        )
    }
}

impl Event {
    /// Milliseconds from `self` to `end`, waiting for both.
    pub fn elapsed_ms(&self, end: &Event) -> Result<f32> {
        self.raw
            .elapsed_ms(&end.raw)
            .during(|| "reading event times".into(), self.ordinal)
    }
}

/// The length a growing buffer gets for `len` elements: 25% more, so a
/// slowly growing batch does not reallocate every time.
fn with_headroom(len: usize) -> usize {
    (len + len / 4).max(1)
}

fn check_len(what: &str, src: usize, dst: usize) -> Result<()> {
    if src > dst {
        return Err(CudaError::Invalid(format!(
            "{what}: source has {src} elements but the destination only {dst}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::memops;
    use crate::cuda::testing::{gpu_or_skip, random_bytes};

    /// A buffer allocated on stream 0 is written first on stream 1 and read
    /// on stream 2; another is read through a `Region` on stream 3 (which
    /// cudarc's events do not see) and dropped before that read is waited
    /// for. Under the stand-in's lazy streams, where a stream's work runs only
    /// when something waits for it, both fail unless `alloc` orders the other
    /// streams after the allocation and the drop orders the free after them.
    #[test]
    fn a_buffer_is_usable_on_every_stream_from_allocation_to_drop() {
        let Some(gpu) = gpu_or_skip() else { return };
        let data = random_bytes(5000, 3);
        let mut buf = gpu.alloc::<u8>(data.len()).unwrap();
        gpu.stream(1).upload(&data, &mut buf).unwrap();
        assert!(gpu.stream(2).to_host(&buf).unwrap() == data);

        let s3 = gpu.stream(3);
        let out = gpu.alloc::<u8>(data.len()).unwrap();
        let (from, to) = (
            buf.region(&s3, 0..data.len()).unwrap(),
            out.region(&s3, 0..data.len()).unwrap(),
        );
        memops::copy_region(&s3, from, to).unwrap();
        drop(buf);
        gpu.stream(0).synchronize().unwrap(); // the free has happened here
        assert!(s3.to_host(&out).unwrap() == data);
    }

    #[test]
    fn which_builds_run_where() {
        let all = "sm_80 sm_86 sm_89 sm_90a compute_80";
        assert!(build_runs_on(all, (8, 0)));
        assert!(build_runs_on(all, (9, 0)));
        assert!(
            build_runs_on(all, (10, 0)),
            "compute_80 PTX JITs on Blackwell"
        );
        assert!(!build_runs_on(all, (7, 5)));
        assert!(build_runs_on("sm_90a", (9, 0)));
        assert!(!build_runs_on("sm_90a", (8, 0)));
        assert!(
            !build_runs_on("sm_90a", (10, 0)),
            "sm_90a SASS runs on sm_90 only"
        );
        assert!(
            build_runs_on("sm_80", (8, 6)),
            "sm_80 SASS runs on later 8.x"
        );
        assert!(!build_runs_on("sm_86", (8, 0)));
        assert!(
            !build_runs_on("sm_80", (9, 0)),
            "SASS does not cross majors"
        );
    }
}
