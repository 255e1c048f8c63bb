//! Tensor maps for the Hopper copy engine (TMA): `cuTensorMapEncodeTiled`
//! behind a safe call, and the 128-byte map a kernel takes by value as a
//! `const __grid_constant__ CUtensorMap` parameter (kernels/conv_sm90.cu).

use cudarc::driver::sys;

use super::error::{CudaError, Result};
use super::region::Region;

/// An encoded tensor map: 128 opaque bytes, 128-byte aligned as the driver
/// and the kernel parameter require. It holds the tensor's device address,
/// so it is valid while the region it was made from is.
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct TensorMap(sys::CUtensorMap);

const _: () = assert!(size_of::<TensorMap>() == 128 && align_of::<TensorMap>() == 128);

// SAFETY: plain bytes of the driver's own layout, which the kernel parameter
// (`CUtensorMap`, 128 bytes, 128-byte aligned) has too.
unsafe impl cudarc::driver::DeviceRepr for TensorMap {}

impl TensorMap {
    /// A row-major bf16 matrix of `rows` x `cols` (`cols` contiguous) in
    /// `region`, read in boxes of `box_rows` x `box_cols` with the 128-byte
    /// swizzle (`box_cols` 64: one 128-byte row a box row, the layout wgmma's
    /// 128B-swizzled K-major descriptors read). Elements outside the matrix
    /// load as zeros. Refuses what the driver would (alignment, box limits)
    /// with the condition named.
    pub fn bf16_2d_swizzle128(
        region: Region<u16>,
        rows: u64,
        cols: u64,
        box_rows: u32,
        box_cols: u32,
    ) -> Result<TensorMap> {
        let bad = |d: String| Err(CudaError::Invalid(format!("tensor map: {d}")));
        if rows
            .checked_mul(cols)
            .is_none_or(|n| n > region.len() as u64)
        {
            return bad(format!(
                "{rows} x {cols} bf16 do not fit a region of {}",
                region.len()
            ));
        }
        if !region.is_aligned(16) || !(cols * 2).is_multiple_of(16) {
            return bad(format!(
                "the address and the row pitch ({cols} bf16) must be multiples of 16 bytes"
            ));
        }
        if box_cols as u64 * 2 != 128 || box_rows == 0 || box_rows > 256 {
            return bad(format!(
                "box {box_rows} x {box_cols}: the 128-byte swizzle takes 64 bf16 a row and 1 to 256 rows"
            ));
        }
        let dims = [cols, rows];
        let strides = [cols * 2]; // bytes, of every dimension but the innermost
        let boxes = [box_cols, box_rows];
        let elem_strides = [1u32, 1];
        let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::uninit();
        // SAFETY: the arrays hold `rank` (2) entries, `rank - 1` for the
        // strides; the driver only reads them and writes the 128-byte map.
        // The address is not dereferenced here.
        let r = unsafe {
            sys::cuTensorMapEncodeTiled(
                map.as_mut_ptr(),
                sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                2,
                region.addr as *mut std::ffi::c_void,
                dims.as_ptr(),
                strides.as_ptr(),
                boxes.as_ptr(),
                elem_strides.as_ptr(),
                sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
                sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        };
        match r.result() {
            // SAFETY: a successful encode wrote the whole map.
            Ok(()) => Ok(TensorMap(unsafe { map.assume_init() })),
            Err(e) => bad(format!(
                "cuTensorMapEncodeTiled({rows} x {cols} bf16, box {box_rows} x {box_cols}) failed: {e:?}"
            )),
        }
    }
}
