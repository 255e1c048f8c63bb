"""Reads `dr export --format ml-dr` output with Python's standard library
only (zipfile, pickle, pickletools) and checks what torch.load and ml-dr's
loader rely on (FACTS.md §7-8). Usage: python3 check_ml_dr_files.py DIR NS K
"""

import io
import os
import pickle
import pickletools
import sys
import zipfile

# What torch's weights_only unpickler accepts (FACTS.md §8).
ALLOWED = {
    "PROTO", "STOP", "MARK", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "EMPTY_SET", "BININT", "BININT1",
    "BININT2", "LONG1", "BINFLOAT", "BINUNICODE", "SHORT_BINSTRING", "NONE", "NEWTRUE", "NEWFALSE", "TUPLE",
    "TUPLE1", "TUPLE2", "TUPLE3", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "BINPUT", "LONG_BINPUT",
    "BINGET", "LONG_BINGET", "GLOBAL", "REDUCE", "NEWOBJ", "BUILD", "BINPERSID",
}


def load(path):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        prefix = os.path.basename(path).rsplit(".", 1)[0]
        assert all(n.startswith(prefix + "/") for n in names), names
        assert names[0] == prefix + "/data.pkl", names
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED, info
        assert z.read(prefix + "/version") == b"3\n"
        assert z.read(prefix + "/byteorder") == b"little"
        pkl = z.read(prefix + "/data.pkl")
    assert pkl[:2] == b"\x80\x02", "protocol 2"
    for op, _, _ in pickletools.genops(pkl):
        assert op.name in ALLOWED, f"{path}: opcode {op.name} is refused by torch.load(weights_only=True)"
        assert op.name != "GLOBAL", f"{path}: only plain Python objects expected"
    return pickle.load(io.BytesIO(pkl))


def main():
    d, ns, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cfg = load(os.path.join(d, "config.pth.tar"))
    r = cfg["reinforce"]
    assert r["num_samples"] == ns and r["topk"] == k, r
    assert "interpolation" not in str(r["image_augmentation"]), "ml-dr passes options to torchvision as they are"
    files = sorted(f for f in os.listdir(d) if f.endswith(".pth.tar") and f != "config.pth.tar")
    for f in files:
        idx, samples = load(os.path.join(d, f))
        assert f == f"{idx}.pth.tar", (f, idx)
        assert isinstance(samples, list) and len(samples) == ns
        for s in samples:
            assert list(s) == ["params", "prob"], list(s)
            vals, ids = s["prob"]
            assert isinstance(s["prob"], tuple) and len(vals) == len(ids) == k
            assert all(isinstance(v, float) for v in vals) and all(isinstance(i, int) for i in ids)
            assert vals == sorted(vals, reverse=True) and sum(vals) <= 1.01
            assert isinstance(s["params"], list)
    print(f"ok: config and {len(files)} image files")


main()
