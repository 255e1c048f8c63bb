//! The file `torch.save` writes (FACTS.md §8): a ZIP of stored members under
//! one `<prefix>/` folder — `data.pkl` (the pickled object) and the small
//! records torch adds — each member's data 64-byte aligned with torch's
//! `FB` padding field. Pickles hold plain Python objects only, protocol 2
//! (what `torch.load(weights_only=True)` accepts: no FRAME, MEMOIZE or
//! SHORT_BINUNICODE, which serde-pickle's protocol-2 writer never emits).

use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use serde_pickle::{DeOptions, SerOptions, Value};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

/// torch's alignment padding extra field, "FB" little-endian.
const FB: u16 = u16::from_le_bytes(*b"FB");

/// The bytes of `torch.save(obj, "<prefix>.xxx")`.
pub fn to_bytes(prefix: &str, obj: &Value) -> Result<Vec<u8>> {
    let pkl = serde_pickle::value_to_vec(obj, SerOptions::new().proto_v2())?;
    // torch writes a random 40-digit id; ours is derived from the content so
    // the same object always gives the same file.
    let digest = Sha256::digest(&pkl);
    let id: String = digest
        .iter()
        .flat_map(|b| [b / 16, b % 16])
        .map(|d| char::from(b'0' + d % 10))
        .take(40)
        .collect();
    let members: [(&str, &[u8]); 6] = [
        ("data.pkl", &pkl),
        (".format_version", b"1"),
        (".storage_alignment", b"64"),
        ("byteorder", b"little"),
        ("version", b"3\n"),
        (".data/serialization_id", id.as_bytes()),
    ];
    let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default())
        .with_alignment_and_header_id(64, FB);
    for (name, data) in members {
        zip.start_file(format!("{prefix}/{name}"), opts)?;
        zip.write_all(data)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// The pickle inside a torch.save file (`<prefix>/data.pkl`).
pub fn data_pkl(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    if !bytes.starts_with(b"PK") {
        bail!(
            "{name}: not a torch.save file (not a ZIP; the legacy tar/pickle format is not read)"
        );
    }
    let mut zip = ZipArchive::new(std::io::Cursor::new(bytes))
        .with_context(|| format!("{name}: not a readable ZIP"))?;
    let member = zip
        .file_names()
        .find(|n| {
            n.as_ref()
                .is_ok_and(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        })
        .with_context(|| format!("{name}: no <prefix>/data.pkl member"))?
        .with_context(|| format!("{name}: a member name is not readable"))?
        .into_owned();
    let mut f = zip
        .by_name(&member)
        .with_context(|| format!("{name}: cannot open {member} in the ZIP"))?;
    let mut pkl = Vec::new();
    f.read_to_end(&mut pkl)
        .with_context(|| format!("{name}: reading {member}"))?;
    Ok(pkl)
}

/// Unpickles `pkl`. Objects the pickle rebuilds by calling a class (numpy
/// scalars in ml-dr's files) come back as a tuple of the call's arguments.
pub fn unpickle(pkl: &[u8], name: &str) -> Result<Value> {
    serde_pickle::value_from_slice(
        pkl,
        DeOptions::new()
            .replace_unresolved_globals()
            .keep_restore_state(),
    )
    .with_context(|| format!("{name}: not a readable pickle"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_aligned_under_one_prefix_and_read_back() {
        let obj = Value::Tuple(vec![
            Value::I64(3),
            Value::List(vec![
                Value::F64(0.5),
                Value::None,
                Value::String("x".into()),
            ]),
        ]);
        let bytes = to_bytes("3.pth", &obj).unwrap();
        assert_eq!(bytes, to_bytes("3.pth", &obj).unwrap(), "deterministic");
        let mut zip = ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
        let names: Vec<String> = zip.file_names().map(|n| n.unwrap().to_string()).collect();
        assert_eq!(names[0], "3.pth/data.pkl");
        assert!(names.iter().all(|n| n.starts_with("3.pth/")), "{names:?}");
        for i in 0..zip.len() {
            let f = zip.by_index(i).unwrap();
            assert_eq!(f.compression(), CompressionMethod::Stored);
            assert_eq!(f.data_start().unwrap() % 64, 0, "{:?}", f.name());
        }
        let pkl = data_pkl(&bytes, "t").unwrap();
        assert_eq!(&pkl[..2], b"\x80\x02", "protocol 2");
        // No opcode torch's weights-only unpickler refuses: FRAME (0x95),
        // MEMOIZE (0x94), SHORT_BINUNICODE (0x8c). (This object's operands
        // hold none of these bytes; tests/ml_dr_export.rs walks the opcodes
        // with Python's pickletools.)
        assert!(!pkl.iter().any(|b| [0x95, 0x94, 0x8c].contains(b)));
        assert_eq!(unpickle(&pkl, "t").unwrap(), obj);
        assert!(
            data_pkl(b"junk", "f")
                .unwrap_err()
                .to_string()
                .contains("not a torch.save")
        );
    }
}
