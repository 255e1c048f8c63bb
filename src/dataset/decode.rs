//! Image files to 8-bit RGB with Pillow's `convert("RGB")` semantics
//! (FACTS.md §9): gray → (v, v, v); alpha dropped without compositing;
//! palette → its RGB entries; 16-bit gray (Pillow "I;16") saturates at 255
//! rather than shifting; 16-bit RGB/RGBA/LA take the high byte (Pillow's
//! ";16B" raw modes); no EXIF rotation (Pillow's loader applies none).

use std::path::Path;

use image::{DynamicImage, ImageReader};

use crate::augment::image::Rgb8;

/// Why a file is not a usable image. Shown as "PATH: REASON"; `reason`
/// alone is what reports that name the file elsewhere print (one wording
/// per problem in every command).
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", self.path(), self.reason())]
pub enum DecodeError {
    Io { path: String, reason: String },
    Undecodable { path: String, detail: String },
    Unsupported { path: String, detail: String },
}

impl DecodeError {
    pub fn path(&self) -> &str {
        match self {
            DecodeError::Io { path, .. }
            | DecodeError::Undecodable { path, .. }
            | DecodeError::Unsupported { path, .. } => path,
        }
    }

    pub fn reason(&self) -> String {
        match self {
            DecodeError::Io { reason, .. } => format!("cannot read the file: {reason}"),
            DecodeError::Undecodable { detail, .. } => {
                format!("not a decodable image ({detail}). Fix: replace or remove the file")
            }
            DecodeError::Unsupported { detail, .. } => detail.clone(),
        }
    }
}

/// Pillow's `DecompressionBombError` threshold: twice `MAX_IMAGE_PIXELS`
/// (89,478,485). Larger images are refused before any pixel is decoded.
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

fn check_size(w: u64, h: u64, name: &str) -> Result<(), DecodeError> {
    if w * h > MAX_PIXELS {
        return Err(DecodeError::Unsupported {
            path: name.into(),
            detail: format!(
                "{w}x{h} is {} pixels, above Pillow's decompression-bomb limit of {MAX_PIXELS}. Fix: downscale the file",
                w * h
            ),
        });
    }
    Ok(())
}

/// Decodes `path` to RGB.
pub fn decode_rgb(path: &Path) -> Result<Rgb8, DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeError::Io {
        path: path.display().to_string(),
        reason: crate::io_reason(&e),
    })?;
    decode_rgb_bytes(&bytes, &path.display().to_string())
}

/// Decodes an in-memory file; `name` appears in errors.
pub fn decode_rgb_bytes(bytes: &[u8], name: &str) -> Result<Rgb8, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Unsupported {
            path: name.into(),
            detail: "the file is empty".into(),
        });
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return decode_jpeg(bytes, name);
    }
    let undecodable = |e: image::ImageError| DecodeError::Undecodable {
        path: name.into(),
        detail: e.to_string(),
    };
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Undecodable {
            path: name.into(),
            detail: e.to_string(),
        })?;
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    check_size(w as u64, h as u64, name)?;
    // The pixel limit above is ours; the crate's default allocation cap
    // (512 MiB) would refuse some images Pillow opens.
    image::ImageDecoder::set_limits(&mut decoder, image::Limits::no_limits())
        .map_err(undecodable)?;
    let img = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    to_rgb(img, name)
}

fn to_rgb(img: DynamicImage, name: &str) -> Result<Rgb8, DecodeError> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data: Vec<u8> = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageRgba8(b) => b
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        DynamicImage::ImageLuma8(b) => b.into_raw().into_iter().flat_map(|v| [v; 3]).collect(),
        DynamicImage::ImageLumaA8(b) => b
            .into_raw()
            .chunks_exact(2)
            .flat_map(|p| [p[0]; 3])
            .collect(),
        // Pillow opens 16-bit gray as "I;16"; convert("RGB") clamps to 255.
        DynamicImage::ImageLuma16(b) => b
            .into_raw()
            .into_iter()
            .flat_map(|v| [v.min(255) as u8; 3])
            .collect(),
        DynamicImage::ImageLumaA16(b) => b
            .into_raw()
            .chunks_exact(2)
            .flat_map(|p| [(p[0] >> 8) as u8; 3])
            .collect(),
        DynamicImage::ImageRgb16(b) => b.into_raw().into_iter().map(|v| (v >> 8) as u8).collect(),
        DynamicImage::ImageRgba16(b) => b
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8])
            .collect(),
        other => {
            return Err(DecodeError::Unsupported {
                path: name.into(),
                detail: format!(
                    "pixel format {:?} is not supported (float images). Fix: convert the file to 8-bit PNG or JPEG",
                    other.color()
                ),
            });
        }
    };
    Ok(Rgb8::from_raw(w, h, data))
}

/// libjpeg reports a fatal error by unwinding out of the C decoder with a
/// message (mozjpeg's convention); `decode_jpeg` catches it.
extern "C-unwind" fn jpeg_fatal(cinfo: &mut mozjpeg_sys::jpeg_common_struct) {
    // SAFETY: libjpeg calls this with its live error manager installed.
    let code = unsafe { (*cinfo.err).msg_code };
    std::panic::resume_unwind(Box::new(format!("libjpeg error {code}")));
}

/// Warnings are ignored, as Pillow ignores them, except a premature end of
/// data: Pillow refuses truncated files ("image file is truncated") where
/// libjpeg would pad them with gray.
extern "C-unwind" fn jpeg_warning(
    cinfo: &mut mozjpeg_sys::jpeg_common_struct,
    level: std::os::raw::c_int,
) {
    // SAFETY: as above.
    let code = unsafe { (*cinfo.err).msg_code };
    if level < 0 && code == mozjpeg_sys::JWRN_JPEG_EOF {
        std::panic::resume_unwind(Box::new(
            "the file is truncated (premature end of JPEG data)".to_string(),
        ));
    }
}

fn jpeg_errors() -> mozjpeg_sys::jpeg_error_mgr {
    // SAFETY: an all-zero jpeg_error_mgr is what jpeg_std_error expects to fill.
    let mut err: mozjpeg_sys::jpeg_error_mgr = unsafe { std::mem::zeroed() };
    // SAFETY: fills `err` with libjpeg's defaults; no other effect.
    unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
    err.error_exit = Some(jpeg_fatal);
    err.emit_message = Some(jpeg_warning);
    err
}

/// JPEG through libjpeg-turbo's decoder with Pillow's settings (ISLOW IDCT,
/// fancy upsampling, libjpeg's colour conversion). CMYK/YCCK come out as
/// CMYK, inverted when an Adobe marker is present (Pillow's "CMYK;I"), then
/// Pillow's `cmyk2rgb`.
fn decode_jpeg(bytes: &[u8], name: &str) -> Result<Rgb8, DecodeError> {
    std::panic::catch_unwind(|| decode_jpeg_unwinding(bytes, name)).unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "libjpeg failed".into());
        Err(DecodeError::Undecodable {
            path: name.into(),
            detail: format!("JPEG: {detail}"),
        })
    })
}

fn decode_jpeg_unwinding(bytes: &[u8], name: &str) -> Result<Rgb8, DecodeError> {
    use mozjpeg::{ColorSpace, Decompress, Marker};
    let undecodable = |e: std::io::Error| DecodeError::Undecodable {
        path: name.into(),
        detail: format!("JPEG: {e}"),
    };
    let d = Decompress::builder()
        .with_err(jpeg_errors())
        .with_markers(&[Marker::APP(14)])
        .from_mem(bytes)
        .map_err(undecodable)?;
    let (w, h) = d.size();
    check_size(w as u64, h as u64, name)?;
    let adobe = d.markers().any(|m| m.data.starts_with(b"Adobe"));
    let cmyk = matches!(d.color_space(), ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK);
    let data = if cmyk {
        let mut s = d.to_colorspace(ColorSpace::JCS_CMYK).map_err(undecodable)?;
        let px: Vec<[u8; 4]> = s.read_scanlines().map_err(undecodable)?;
        s.finish().map_err(undecodable)?;
        px.into_iter()
            .flat_map(|p| cmyk_to_rgb(if adobe { p.map(|v| 255 - v) } else { p }))
            .collect()
    } else {
        let mut s = d.rgb().map_err(undecodable)?;
        let px: Vec<u8> = s.read_scanlines::<u8>().map_err(undecodable)?;
        s.finish().map_err(undecodable)?;
        px
    };
    if data.len() != w * h * 3 {
        return Err(DecodeError::Undecodable {
            path: name.into(),
            detail: format!("JPEG: {} bytes decoded for {w}x{h}", data.len()),
        });
    }
    Ok(Rgb8::from_raw(w, h, data))
}

/// Pillow `cmyk2rgb`: `nk = 255 - K`, `R = clip(nk - MULDIV255(C, nk))`.
fn cmyk_to_rgb([c, m, y, k]: [u8; 4]) -> [u8; 3] {
    let nk = 255 - k as i32;
    let muldiv255 = |a: u8| {
        let t = a as i32 * nk + 128;
        ((t >> 8) + t) >> 8
    };
    [c, m, y].map(|v| (nk - muldiv255(v)).clamp(0, 255) as u8)
}
