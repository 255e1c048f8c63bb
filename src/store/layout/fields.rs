//! The byte-level access of [`Layout::encode`] and [`Layout::decode`]:
//! named fields at their offsets, class ids whole or packed, one side's
//! (image or pair) transform records and flag bits.

use super::Layout;
use crate::augment::params::{CropRecord, SideParams};
use crate::augment::randaug;
use crate::labels::IdFormat;
use crate::labels::packed::{pack, unpack};

fn side_name(prefix: &str, base: &str) -> String {
    format!("{prefix}{base}")
}

pub(super) struct Writer<'a> {
    pub(super) l: &'a Layout,
    pub(super) out: &'a mut [u8],
}

impl Writer<'_> {
    pub(super) fn at(&mut self, name: &str, i: usize, bytes: &[u8]) {
        let f = self
            .l
            .field(name)
            .unwrap_or_else(|| panic!("no field {name}"));
        let o = f.offset + i * f.kind.size();
        self.out[o..o + bytes.len()].copy_from_slice(bytes);
    }

    pub(super) fn uint(&mut self, name: &str, i: usize, v: u64) {
        let f = self
            .l
            .field(name)
            .unwrap_or_else(|| panic!("no field {name}"));
        let n = f.kind.size();
        debug_assert!(n == 8 || v < 1 << (8 * n), "{name} = {v} does not fit");
        let o = f.offset + i * n;
        self.out[o..o + n].copy_from_slice(&v.to_le_bytes()[..n]);
    }

    /// Class ids into `name` (whole bytes) or `{name}_packed`, whichever
    /// the layout has; nothing when `ids` is empty (the other mode's field).
    pub(super) fn ids(&mut self, name: &str, ids: &[u32]) {
        if ids.is_empty() {
            return;
        }
        match self.l.coding.ids {
            IdFormat::Bytes => {
                for (i, &c) in ids.iter().enumerate() {
                    self.uint(name, i, c as u64);
                }
            }
            IdFormat::Packed => {
                let f = self
                    .l
                    .field(&format!("{name}_packed"))
                    .unwrap_or_else(|| panic!("no field {name}_packed"));
                pack(
                    ids,
                    self.l.id_bits,
                    &mut self.out[f.offset..f.offset + f.count],
                );
            }
        }
    }

    pub(super) fn side(
        &mut self,
        prefix: &str,
        crop: &CropRecord,
        side: &SideParams,
        flags: &mut u16,
        bits: [u16; 3],
    ) {
        if let Some((i, j)) = crop.random_crop {
            self.uint(&side_name(prefix, "random_crop"), 0, i as u64);
            self.uint(&side_name(prefix, "random_crop"), 1, j as u64);
        }
        if let Some(r) = crop.rrc {
            for (k, v) in r.iter().enumerate() {
                self.uint(&side_name(prefix, "rrc"), k, *v as u64);
            }
        }
        if side.flip == Some(true) {
            *flags |= bits[0];
        }
        if let Some(Some(ops)) = &side.rand_augment {
            *flags |= bits[1];
            for (k, &(op, m)) in ops.iter().enumerate() {
                let code = ((op as u64) << 1) | m.is_sign_negative() as u64;
                self.uint(&side_name(prefix, "ra_ops"), k, code);
            }
        }
        if let Some(Some(e)) = side.erase {
            *flags |= bits[2];
            for (k, v) in e.iter().enumerate() {
                self.uint(&side_name(prefix, "erase"), k, *v as u64);
            }
        }
    }
}

pub(super) struct Reader<'a> {
    pub(super) l: &'a Layout,
    pub(super) b: &'a [u8],
}

impl Reader<'_> {
    pub(super) fn bytes(&self, name: &str, i: usize) -> &[u8] {
        let f = self
            .l
            .field(name)
            .unwrap_or_else(|| panic!("no field {name}"));
        let o = f.offset + i * f.kind.size();
        &self.b[o..o + f.kind.size()]
    }

    pub(super) fn uint(&self, name: &str, i: usize) -> u64 {
        let mut v = [0u8; 8];
        let b = self.bytes(name, i);
        v[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(v)
    }

    /// `k` class ids from `name` or `{name}_packed` (`Writer::ids`).
    pub(super) fn ids(&self, name: &str, k: usize) -> Vec<u32> {
        if k == 0 {
            return Vec::new();
        }
        match self.l.coding.ids {
            IdFormat::Bytes => (0..k).map(|i| self.uint(name, i) as u32).collect(),
            IdFormat::Packed => {
                let f = self
                    .l
                    .field(&format!("{name}_packed"))
                    .unwrap_or_else(|| panic!("no field {name}_packed"));
                unpack(&self.b[f.offset..f.offset + f.count], k, self.l.id_bits)
            }
        }
    }

    pub(super) fn side(
        &self,
        prefix: &str,
        flags: u16,
        bits: [u16; 3],
        (w, h): (usize, usize),
    ) -> (CropRecord, SideParams) {
        let aug = &self.l.aug;
        let rc = &side_name(prefix, "random_crop");
        let rrc = &side_name(prefix, "rrc");
        let crop = CropRecord {
            random_crop: aug
                .random_crop
                .as_ref()
                .map(|_| (self.uint(rc, 0) as i64, self.uint(rc, 1) as i64)),
            rrc: aug
                .random_resized_crop
                .as_ref()
                .map(|_| [0, 1, 2, 3].map(|k| self.uint(rrc, k) as i64)),
        };
        let ops = &side_name(prefix, "ra_ops");
        let erase = &side_name(prefix, "erase");
        let side = SideParams {
            flip: aug.random_horizontal_flip.map(|_| flags & bits[0] != 0),
            rand_augment: aug.rand_augment.as_ref().map(|c| {
                (flags & bits[1] != 0).then(|| {
                    (0..c.num_ops as usize)
                        .map(|k| {
                            let code = self.uint(ops, k);
                            let op = (code >> 1) as usize;
                            let m = randaug::magnitude(op, c.magnitude, c.num_magnitude_bins, h, w);
                            (op as u8, if code & 1 == 1 { -m } else { m })
                        })
                        .collect()
                })
            }),
            erase: aug.random_erase.as_ref().map(|_| {
                (flags & bits[2] != 0).then(|| [0, 1, 2, 3].map(|k| self.uint(erase, k) as i64))
            }),
        };
        (crop, side)
    }
}
