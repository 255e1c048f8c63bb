//! Minimal `.npy` (NumPy format 1.0) reading and writing for C-ordered
//! little-endian float32 and uint8 arrays: what `dr augment` writes and what
//! the golden fixtures hold.

use std::path::Path;

use anyhow::{Context, Result, bail};

pub trait Element: bytemuck::Pod {
    const DESCR: &'static str;
}
impl Element for f32 {
    const DESCR: &'static str = "<f4";
}
impl Element for u8 {
    const DESCR: &'static str = "|u1";
}
impl Element for i64 {
    const DESCR: &'static str = "<i8";
}
impl Element for u32 {
    const DESCR: &'static str = "<u4";
}

/// Serialises `data` with `shape` (product must match).
pub fn to_bytes<T: Element>(shape: &[usize], data: &[T]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "npy: shape {shape:?} vs {} elements",
        data.len()
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_str = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_str}, }}",
        T::DESCR
    );
    // Pad so the data starts at a multiple of 64 bytes; the header ends in '\n'.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytemuck::cast_slice(data));
    out
}

pub fn write<T: Element>(path: &Path, shape: &[usize], data: &[T]) -> Result<()> {
    std::fs::write(path, to_bytes(shape, data))
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads an array of element type `T`: (shape, data).
pub fn read<T: Element>(path: &Path) -> Result<(Vec<usize>, Vec<T>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    from_bytes(&bytes).with_context(|| format!("{}: not a readable .npy", path.display()))
}

pub fn from_bytes<T: Element>(bytes: &[u8]) -> Result<(Vec<usize>, Vec<T>)> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("missing the NUMPY magic");
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12),
        v => bail!("format version {v} is not supported"),
    };
    let header = std::str::from_utf8(bytes.get(start..start + hlen).context("truncated header")?)?;
    let field = |key: &str| {
        header
            .split(&format!("'{key}':"))
            .nth(1)
            .map(str::trim_start)
    };
    let descr = field("descr")
        .and_then(|s| s.split('\'').nth(1))
        .context("no descr")?;
    if descr != T::DESCR && !(T::DESCR == "|u1" && descr == "<u1") {
        bail!("dtype {descr}, expected {}", T::DESCR);
    }
    if field("fortran_order").is_some_and(|s| s.starts_with("True")) {
        bail!("Fortran-ordered arrays are not supported");
    }
    let shape_str = field("shape")
        .and_then(|s| s.split(')').next())
        .context("no shape")?;
    let shape: Vec<usize> = shape_str
        .trim_start_matches('(')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let data = &bytes[start + hlen..];
    let n: usize = shape.iter().product();
    if data.len() != n * size_of::<T>() {
        bail!("{} data bytes for shape {shape:?}", data.len());
    }
    Ok((shape, bytemuck::pod_collect_to_vec(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_alignment() {
        let b = to_bytes(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(b[10 + hlen - 1], b'\n');
        let (shape, data): (_, Vec<f32>) = from_bytes(&b).unwrap();
        assert_eq!(shape, [2, 3]);
        assert_eq!(data[5], 6.0);
        let (shape, _): (_, Vec<u8>) = from_bytes(&to_bytes(&[4], &[1u8, 2, 3, 4])).unwrap();
        assert_eq!(shape, [4]);
        assert!(from_bytes::<u8>(&b).is_err(), "dtype mismatch is an error");
    }
}
