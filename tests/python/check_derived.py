"""`dr reinforce --params derived` through python/dr_reader: its port of dr's
sampler (dr_reader.sampler) regenerates the parameters bit for bit.
Usage:
  python3 check_derived.py dataset STORED DERIVED
      the same job with --params stored and derived: every usable sample's
      params() and compressed() equal, floats by their bits
  python3 check_derived.py draws EXPECTED.json
      dr's own draws (tests/derived_params.rs writes them: per config the
      augmentation, seed, NS, decoded sizes, group size, work order and
      each (image, sample)'s parameters) against the port's
"""

import json
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
import dr_reader  # noqa: E402
from dr_reader import sampler  # noqa: E402


def bits(v):
    """Every float replaced by its float64 bits, tuples by lists."""
    if isinstance(v, float):
        return ["f64", struct.unpack("<Q", struct.pack("<d", v))[0]]
    if isinstance(v, (list, tuple)):
        return [bits(x) for x in v]
    if isinstance(v, dict):
        return {k: bits(x) for k, x in v.items()}
    return v


def check_dataset(stored, derived):
    a, b = dr_reader.open(stored), dr_reader.open(derived)
    assert (a.params_mode, b.params_mode) == ("stored", "derived"), (a.params_mode, b.params_mode)
    assert a.usable() == b.usable(), (a.usable(), b.usable())
    n = 0
    for i in a.usable():
        for s in range(a.num_samples):
            assert bits(a.params(i, s)) == bits(b.params(i, s)), (i, s, a.params(i, s), b.params(i, s))
            assert bits(a.compressed(i, s)) == bits(b.compressed(i, s)), (i, s)
            assert a.probs(i, s) == b.probs(i, s), (i, s)
            n += 1
    for i in range(len(a)):
        if i not in a.usable():
            assert b.params(i, 0) is None and b.derived_record(i, 0) is None
    print(f"ok: {n} derived records of {len(a.usable())} images equal the stored ones")


def normal(p):
    """One draw in the form tests/derived_params.rs writes dr's."""
    def side(crop, s):
        ra = s.get("ra")
        return [crop.get("random_crop"), crop.get("rrc"), s.get("flip"),
                None if ra is None else [[op, bool(neg)] for op, neg in ra], s.get("erase")]
    pair = None
    if "id2" in p:
        pair = [p["id2"], p["sample2"]] + side(p["pair_crop"], p["pair_side"])
    cutmix = p.get("cutmix")
    return side(p["crop"], p["side"]) + [pair, p.get("mixup"),
                                         None if cutmix is None else [cutmix[0], list(cutmix[1])]]


def check_draws(expected):
    with open(expected) as f:
        cases = json.load(f)
    n = 0
    for case in cases:
        aug, seed, ns, g = case["aug"], case["seed"], case["num_samples"], case["group"]
        sizes = [None if s is None else tuple(s) for s in case["sizes"]]
        order = sampler.permutation(seed, len(sizes), sampler.S_GROUPS)
        assert order == case["order"], "the mixing groups' permutation differs"
        position = {img: k for k, img in enumerate(order)}
        for image, s, want in case["draws"]:
            g0 = position[image] // g * g
            candidates = [i for i in order[g0:g0 + g] if sizes[i] is not None]
            got = normal(sampler.sample(aug, seed, ns, lambda i: sizes[i], image, s, candidates))
            got = json.loads(json.dumps(got))
            assert bits(got) == bits(want), (case["name"], image, s, got, want)
            n += 1
    print(f"ok: {n} draws of {len(cases)} configs equal dr's")


if __name__ == "__main__":
    if sys.argv[1] == "dataset":
        check_dataset(sys.argv[2], sys.argv[3])
    else:
        check_draws(sys.argv[2])
