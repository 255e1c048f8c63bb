"""`dr reinforce --prob-format u8log --class-ids packed` through python/dr_reader
and `dr export --format ml-dr`: the reader's decode table is dr's bit for bit,
its probabilities and class ids are those dr's Rust reader decodes, its dense
target and the exported values stay summing to at most 1 (ml-dr's densify,
emulated in float32, keeps them) within 4.3% of the decoded values.
Usage: python3 check_u8log.py OUT EXPORT_DIR EXPECTED.json
(EXPECTED: {"table_bits": [256 u32], "records": {id: [[values, ids], ...]}}
written by tests/u8log_labels.rs from dr's reader.)
"""

import io
import json
import os
import pickle
import sys
import zipfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import dr_reader  # noqa: E402


def main():
    out, exp, expected = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(expected) as f:
        want = json.load(f)
    bits = dr_reader.U8LOG.view(np.uint32).tolist()
    assert bits == want["table_bits"], [(q, a, b) for q, (a, b) in enumerate(zip(bits, want["table_bits"])) if a != b]
    ds = dr_reader.open(out)
    assert (ds.prob_format, ds.class_id_format) == ("u8log", "packed"), (ds.prob_format, ds.class_id_format)
    c = ds.num_classes
    checked = 0
    for i in ds.usable():
        with zipfile.ZipFile(os.path.join(exp, f"{i}.pth.tar")) as z:
            meta = pickle.load(io.BytesIO(z.read(f"{i}.pth/data.pkl")))
        for s, sample in enumerate(meta[1]):
            vals, ids = ds.probs(i, s)
            rust_vals, rust_ids = want["records"][str(i)][s]
            assert np.array_equal(np.float32(vals), np.float32(rust_vals)) and ids == rust_ids, (i, s, vals, rust_vals)
            assert ds.class_ids(i, s).tolist() == ids
            v = np.float32(vals)
            dense = ds.probs(i, s, dense=True)
            assert dense.dtype == np.float32 and float(dense.sum(dtype=np.float32)) <= 1.0 + 1e-6
            assert np.all(np.abs(dense[ids] - v) <= 0.043 * v + 1e-7), (dense[ids], v)
            ev, eids = sample["prob"]
            assert list(eids) == ids, (eids, ids)
            ev = np.float32(ev)
            # ml-dr's densify("smooth") in float32: r = 1 - sum must not be
            # negative, or it takes a softmax of the values.
            assert np.float32(1.0) - ev.sum(dtype=np.float32) >= 0, ev
            assert np.all(np.abs(ev - v) <= 0.043 * v + 1e-7), (ev, v)
            checked += 1
    print(f"ok: {checked} u8log records of {len(ds.usable())} images, decode table equal to dr's ({c} classes)")


if __name__ == "__main__":
    main()
