"""python/dr_reader against dr's own outputs: the compressed parameters and
top-k of every sample equal those `dr export --format ml-dr` wrote (read
with zipfile + pickle), records are zero-copy views, densify follows ml-dr.
Usage: python3 check_reader.py OUT EXPORT_DIR
"""

import io
import json
import os
import pickle
import shutil
import sys
import tempfile
import zipfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import dr_reader  # noqa: E402


def plain(x):
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def exported(d, i):
    path = os.path.join(d, f"{i}.pth.tar")
    if not os.path.exists(path):
        return None
    with zipfile.ZipFile(path) as z:
        return pickle.load(io.BytesIO(z.read(f"{i}.pth/data.pkl")))


def main():
    out, exp = sys.argv[1], sys.argv[2]
    ds = dr_reader.open(out)
    assert len(ds) == len(ds.paths) == len(ds.labels)
    checked = 0
    for i in range(len(ds)):
        recs = ds.records(i)
        assert isinstance(recs, np.memmap) and recs.shape == (ds.num_samples,), type(recs)
        meta = exported(exp, i)
        if meta is None:
            assert not ds.valid(i), f"image {i} has no export but valid records"
            assert ds.params(i, 0) is None and ds.compressed(i, 0) is None
            continue
        assert meta[0] == i
        for s, sample in enumerate(meta[1]):
            got = ds.compressed(i, s)
            assert plain(got) == plain(sample["params"]), (i, s, got, sample["params"])
            vals, ids = ds.probs(i, s)
            assert np.allclose(vals, sample["prob"][0]) and ids == list(sample["prob"][1]), (i, s)
            p = ds.params(i, s)
            assert isinstance(p, dict) and all(isinstance(v, tuple) for k, v in p.items()
                                               if k not in ("mixup", "cutmix", "id2")), p
            dense = ds.probs(i, s, dense=True)
            assert dense.shape == (ds.num_classes,) and abs(float(dense.sum()) - 1.0) < 1e-3
            assert np.allclose(dense[ids], vals)
            zeros = ds.probs(i, s, dense=True, method="zeros")
            assert abs(float(zeros.sum()) - 1.0) < 1e-5 and np.count_nonzero(zeros) <= ds.topk
            checked += 1
    # The images to train on: every valid one, none of the bad ones.
    assert ds.usable() == [i for i in range(len(ds)) if ds.valid(i)], ds.usable()
    assert len(ds.usable()) < len(ds), "the fixture has bad images"
    assert f"{len(ds)} images x {ds.num_samples} samples" in repr(ds), repr(ds)
    # An unfinished dataset is refused unless asked for; a folder without a
    # manifest is not a dataset.
    with tempfile.TemporaryDirectory() as tmp:
        part = os.path.join(tmp, "part")
        shutil.copytree(out, part)
        with open(os.path.join(part, "manifest.json")) as f:
            m = json.load(f)
        m["status"] = "running"
        with open(os.path.join(part, "manifest.json"), "w") as f:
            json.dump(m, f)
        try:
            dr_reader.open(part)
            raise AssertionError("an incomplete dataset opened")
        except ValueError as e:
            assert "incomplete" in str(e) and "allow_incomplete" in str(e), e
        assert len(dr_reader.open(part, allow_incomplete=True)) == len(ds)
        try:
            dr_reader.open(tmp)
            raise AssertionError("a folder without a manifest opened")
        except FileNotFoundError as e:
            assert "no manifest.json" in str(e), e
    print(f"ok: {checked} samples of {len(ds)} images match the export")


main()
