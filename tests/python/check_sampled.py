"""Sampled labels (`dr reinforce --label-mode sampled`) through python/dr_reader
and `dr export --format ml-dr`: the reader's dense target is bincount(draws) / k,
and ml-dr's `densify` (dr/utils.py, default "smooth", emulated here in float32
as torch computes it) gives count / k back from the exported files.
Usage: python3 check_sampled.py OUT EXPORT_DIR
"""

import io
import os
import pickle
import sys
import zipfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import dr_reader  # noqa: E402


def densify_smooth(values, ids, num_classes):
    """ml-dr's densify(..., "smooth") in float32: r = 1 - sum; its softmax
    branch when r < 0 (which export must never trigger)."""
    sp = np.asarray(values, np.float32)
    r = np.float32(1.0) - sp.sum(dtype=np.float32)
    assert r >= 0, f"sum {sp.sum(dtype=np.float32)} > 1: ml-dr would take its softmax branch"
    p = np.full(num_classes, r / np.float32(num_classes - len(sp)), np.float32)
    p[ids] = sp
    return p


def main():
    out, exp = sys.argv[1], sys.argv[2]
    ds = dr_reader.open(out)
    assert ds.label_mode == "sampled", ds.label_mode
    k, c = ds.topk, ds.num_classes
    checked = 0
    for i in ds.usable():
        with zipfile.ZipFile(os.path.join(exp, f"{i}.pth.tar")) as z:
            meta = pickle.load(io.BytesIO(z.read(f"{i}.pth/data.pkl")))
        for s, sample in enumerate(meta[1]):
            draws = ds.record(i, s)["draws"].astype(np.int64)
            assert len(draws) == k and np.all(np.diff(draws) >= 0), draws
            dense = ds.probs(i, s, dense=True)
            want = np.bincount(draws, minlength=c) / k
            assert dense.dtype == np.float32 and np.array_equal(dense, want.astype(np.float32))
            assert abs(float(dense.sum()) - 1.0) < 1e-6
            vals, ids = sample["prob"]
            assert sorted(ids) == sorted(set(draws.tolist())) and len(ids) == len(set(ids)), (ids, draws)
            # count / k rounded toward zero: below the exact value, within
            # the export's stated margin (n 2^-24) of it.
            exact = np.bincount(draws, minlength=c)[ids] / k
            v = np.asarray(vals)
            assert np.all(v <= exact) and np.all(exact - v <= len(ids) * 2.0**-24 + 2.0**-23), (v, exact)
            p = densify_smooth(vals, ids, c)
            assert np.array_equal(p[ids], np.float32(v)) and float(p.sum()) <= 1.0 + 1e-6
            assert float(np.abs(p - want).max()) < 1e-6
            checked += 1
    print(f"ok: {checked} sampled records of {len(ds.usable())} images")


if __name__ == "__main__":
    main()
