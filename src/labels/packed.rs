//! `--class-ids packed`: class ids in the fewest bits the class count
//! needs, `id_bits(C) = ceil(log2 C)` (10 bits for 1000 classes, 15 for
//! 21841), k of them in `ceil(k bits / 8)` bytes.
//!
//! Id i takes bits [i b, (i + 1) b) of the field read as one little-endian
//! integer (bit 0 is the low bit of byte 0), so numpy unpacks it with
//! `np.unpackbits(field, bitorder="little")[:k * b].reshape(k, b) @ (1 << np.arange(b))`.
//! The bits past k b are zero (`dr verify` checks). b bits hold ids up to
//! 2^b - 1, which may pass C - 1 (1000..1023 at 10 bits): readers refuse
//! those, `dr verify` names them.

/// Bits a class id of `classes` classes takes: ceil(log2 classes), at least 1.
pub fn id_bits(classes: usize) -> u32 {
    let top = classes.saturating_sub(1) as u64;
    (u64::BITS - top.leading_zeros()).max(1)
}

/// Bytes that hold `k` ids of `bits` bits.
pub fn packed_bytes(k: usize, bits: u32) -> usize {
    (k * bits as usize).div_ceil(8)
}

/// Writes `ids` (each below 2^bits) into `out` (`packed_bytes` long).
pub fn pack(ids: &[u32], bits: u32, out: &mut [u8]) {
    debug_assert_eq!(out.len(), packed_bytes(ids.len(), bits));
    out.fill(0);
    for (i, &id) in ids.iter().enumerate() {
        debug_assert!(
            bits == 32 || id >> bits == 0,
            "id {id} does not fit {bits} bits"
        );
        for j in 0..bits as usize {
            if id >> j & 1 == 1 {
                let at = i * bits as usize + j;
                out[at / 8] |= 1 << (at % 8);
            }
        }
    }
}

/// The `k` ids [`pack`] wrote into `bytes`.
pub fn unpack(bytes: &[u8], k: usize, bits: u32) -> Vec<u32> {
    (0..k)
        .map(|i| {
            (0..bits as usize).fold(0u32, |id, j| {
                let at = i * bits as usize + j;
                id | (((bytes[at / 8] >> (at % 8)) & 1) as u32) << j
            })
        })
        .collect()
}

/// Whether the bits after the k ids are zero, as [`pack`] leaves them.
pub fn padding_is_zero(bytes: &[u8], k: usize, bits: u32) -> bool {
    let used = k * bits as usize;
    (used..bytes.len() * 8).all(|at| bytes[at / 8] >> (at % 8) & 1 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_the_fewest_that_hold_every_id() {
        for (classes, bits) in [
            (1, 1),
            (2, 1),
            (3, 2),
            (10, 4),
            (37, 6),
            (1000, 10),
            (1024, 10),
            (1025, 11),
            (21841, 15),
            (65536, 16),
            (65537, 17),
        ] {
            assert_eq!(id_bits(classes), bits, "{classes} classes");
            assert!(classes - 1 < 1 << bits);
        }
        assert_eq!(packed_bytes(10, 10), 13);
        assert_eq!(packed_bytes(5, 6), 4);
    }

    #[test]
    fn ids_round_trip_and_leave_the_padding_zero() {
        let ids = [999, 0, 1, 512, 1023, 7, 998, 3, 100, 640];
        let mut b = vec![0xFF; packed_bytes(ids.len(), 10)];
        pack(&ids, 10, &mut b);
        assert_eq!(unpack(&b, ids.len(), 10), ids);
        assert!(padding_is_zero(&b, ids.len(), 10));
        // Bit order: id 0 in the low bits of byte 0 (999 = 0b11_1110_0111).
        assert_eq!(b[0], 0b1110_0111);
        assert_eq!(b[1] & 0b11, 0b11);
        b[12] |= 0x80;
        assert!(!padding_is_zero(&b, ids.len(), 10));
        let wide = [0u32, 65536, 131071];
        let mut w = vec![0; packed_bytes(3, 17)];
        pack(&wide, 17, &mut w);
        assert_eq!(unpack(&w, 3, 17), wide);
    }
}
