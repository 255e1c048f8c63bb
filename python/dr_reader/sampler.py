"""dr's augmentation-parameter sampler in Python, for `--params derived`
datasets, whose records store no parameters: a port of `src/rng.rs`
(Philox4x32-10 and its draws) and `src/augment/params.rs` (`Draw::sample`)
at PARAMS_SAMPLER_VERSION, giving each (image, sample) the values `dr
reinforce` drew, bit for bit (tests/derived_params.rs checks it against
stored records).

Floats follow the Rust code operation by operation: float32 steps are
rounded with struct (a float32 add/mul/sub computed in float64 and rounded
once is the float32 result), and the transcendental functions (logf, expf,
log, cos, pow) are the C math library's, called through ctypes, since the
Rust sampler calls the same functions of the same libm; Python's own
float32-free `math` could differ from `expf` in the last bit.
"""

import ctypes
import ctypes.util
import math
import struct

PARAMS_SAMPLER_VERSION = 1

_MASK = 0xFFFFFFFF
_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
# Stream numbers (Philox counter word 2), as in params.rs.
S_CROP, S_FLIP, S_RANDAUG, S_ERASE, S_MIXUP, S_CUTMIX, S_PAIR, S_RANDOM_CROP = range(8)
PAIR_SIDE = 16
S_GROUPS = 0x47525053
# RandAugment ops whose magnitude is negated half the time (randaug::SIGNED).
SIGNED = [False] + [True] * 9 + [False] * 4
TAU = 6.283185307179586  # std::f64::consts::TAU


def _load_libm():
    for name in (ctypes.util.find_library("m"), "libm.so.6", None):
        try:
            lib = ctypes.CDLL(name)
            lib.expf, lib.logf  # noqa: B018 (both must exist)
        except (OSError, AttributeError, TypeError):
            continue
        for f, t in (("expf", ctypes.c_float), ("logf", ctypes.c_float), ("log", ctypes.c_double),
                     ("cos", ctypes.c_double), ("pow", ctypes.c_double)):
            fn = getattr(lib, f)
            fn.restype = t
            fn.argtypes = [t, t] if f == "pow" else [t]
        return lib
    raise OSError("dr_reader: no C math library (libm) found through ctypes; derived parameters need its "
                  "expf/logf/log/cos/pow, which dr's sampler calls. Fix: read the dataset with `dr`, or "
                  "run Python where libm can be loaded")


_libm = None


def _m():
    global _libm
    if _libm is None:
        _libm = _load_libm()
    return _libm


def f32(x):
    """x rounded to float32 (as a Python float)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _f32_next_down(x):
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    if x > 0:
        bits -= 1
    elif x < 0:
        bits += 1
    else:
        bits = 0x80000001
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def philox4x32_10(c, k):
    c0, c1, c2, c3 = c
    k0, k1 = k
    for r in range(10):
        if r:
            k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
        p0, p1 = _M0 * c0, _M1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & _MASK, (p0 >> 32) ^ c3 ^ k1, p0 & _MASK
    return c0, c1, c2, c3


class Philox:
    """One (seed, c0, c1, stream) counter line, read in order (rng::Philox)."""

    def __init__(self, seed, c0, c1, stream):
        self.key = (seed & _MASK, (seed >> 32) & _MASK)
        self.c = [c0 & _MASK, c1 & _MASK, stream & _MASK, 0]
        self.block, self.used = (0, 0, 0, 0), 4

    def next_u32(self):
        if self.used == 4:
            self.block = philox4x32_10(self.c, self.key)
            self.c[3] = (self.c[3] + 1) & _MASK
            self.used = 0
        v = self.block[self.used]
        self.used += 1
        return v

    def next_u64(self):
        lo = self.next_u32()
        return self.next_u32() << 32 | lo

    def uniform_f32(self):
        return (self.next_u32() >> 8) * (1.0 / (1 << 24))

    def uniform_f64(self):
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def uniform_range_f32(self, lo, hi):
        v = f32(f32(self.uniform_f32() * f32(hi - lo)) + lo)
        if v >= hi and hi > lo:
            return max(lo, _f32_next_down(hi))
        return v

    def below(self, n):
        assert n > 0
        while True:
            m = self.next_u32() * n
            low = m & _MASK
            if low >= n or low >= ((1 << 32) - n) % n:
                return m >> 32

    def range_inclusive(self, lo, hi):
        return lo + self.below(hi - lo + 1)

    def chance_below(self, p):
        return self.uniform_f32() < p

    def chance_at_most(self, p):
        return self.uniform_f32() <= p

    def normal(self):
        m = _m()
        u1 = 1.0 - self.uniform_f64()
        u2 = self.uniform_f64()
        return math.sqrt(-2.0 * m.log(u1)) * m.cos(TAU * u2)

    def gamma(self, shape):
        m = _m()
        if shape < 1.0:
            u = 1.0 - self.uniform_f64()
            return self.gamma(shape + 1.0) * m.pow(u, 1.0 / shape)
        d = shape - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        while True:
            x = self.normal()
            t = 1.0 + c * x
            v = t * t * t
            if v <= 0.0:
                continue
            u = 1.0 - self.uniform_f64()
            if m.log(u) < 0.5 * x * x + d - d * v + d * m.log(v):
                return d * v

    def beta(self, a, b):
        x = self.gamma(a)
        y = self.gamma(b)
        return 0.5 if x + y == 0.0 else x / (x + y)


def permutation(seed, n, stream):
    """rng::permutation: Fisher-Yates on the (seed, u32::MAX, n, stream) line."""
    p = list(range(n))
    r = Philox(seed, _MASK, n, stream)
    for i in range(n - 1, 0, -1):
        j = r.below(i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def _hw(size):
    """(h, w) of a config size: [h, w] or one number for both."""
    return (size[0], size[1]) if isinstance(size, list) else (size, size)


def stage_sizes(aug, w, h):
    """((w, h) RandomCrop pads to, (w, h) before RandomResizedCrop, output (w, h)): params::stage_sizes."""
    if "resize" in aug:
        r = aug["resize"]
        if isinstance(r["size"], list):
            h, w = r["size"]
        else:
            s, short, long_ = r["size"], min(w, h), max(w, h)
            new_short, new_long = s, int(s * long_ / short)
            m = r.get("max_size")
            if m is not None and new_long > m:
                new_short, new_long = int(m * new_short / new_long), m
            (h, w) = (new_long, new_short) if w <= h else (new_short, new_long)
    if "center_crop" in aug:
        h, w = _hw(aug["center_crop"]["size"])
    padded = (w, h)
    if "random_crop" in aug:
        rc = aug["random_crop"]
        l_, t, r_, b = rc["padding"]
        th, tw = _hw(rc["size"])
        pw, ph = w + l_ + r_, h + t + b
        if rc["pad_if_needed"]:
            if pw < tw:
                pw += 2 * (tw - pw)
            if ph < th:
                ph += 2 * (th - ph)
        padded = (pw, ph)
        w, h = tw, th
    before_rrc = (w, h)
    if "random_resized_crop" in aug:
        h, w = _hw(aug["random_resized_crop"]["size"])
    return padded, before_rrc, (w, h)


def _draw_box(r, scale, ratio, area):
    m = _m()
    target = area * r.uniform_range_f32(f32(scale[0]), f32(scale[1]))
    ar = m.expf(r.uniform_range_f32(m.logf(f32(ratio[0])), m.logf(f32(ratio[1]))))
    return round(math.sqrt(target * ar)), round(math.sqrt(target / ar))


def sample_rrc(r, cfg, w, h):
    for _ in range(10):
        cw, ch = _draw_box(r, cfg["scale"], cfg["ratio"], float(w * h))
        if 0 < cw <= w and 0 < ch <= h:
            i = r.range_inclusive(0, h - ch)
            j = r.range_inclusive(0, w - cw)
            return (i, j, ch, cw)
    in_ratio = w / h
    lo, hi = min(cfg["ratio"]), max(cfg["ratio"])
    if in_ratio < lo:
        cw, ch = w, round(w / lo)
    elif in_ratio > hi:
        cw, ch = round(h * hi), h
    else:
        cw, ch = w, h
    return ((h - ch) // 2, (w - cw) // 2, ch, cw)


def sample_rand_augment(r, cfg):
    """None (skipped) or [(op, negated)]: the magnitude is the manifest table's."""
    if not r.chance_at_most(cfg["p"]):
        return None
    ops = []
    for _ in range(cfg["num_ops"]):
        op = r.below(len(SIGNED))
        ops.append((op, SIGNED[op] and r.below(2) == 1))
    return ops


def sample_erase(r, cfg, w, h):
    if not r.chance_at_most(cfg["p"]):
        return None
    for _ in range(10):
        eh, ew = _draw_box(r, cfg["scale"], cfg["ratio"], float(w * h))
        if not (eh < h and ew < w):
            continue
        i = r.range_inclusive(0, h - eh)
        j = r.range_inclusive(0, w - ew)
        return (i, j, eh, ew)
    return (0, 0, h, w)


def cutmix_box(r, lam, w, h):
    cut_rat = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * cut_rat), int(w * cut_rat)
    cx, cy = r.below(h), r.below(w)
    clamp = lambda v, hi: min(max(v, 0), hi)  # noqa: E731
    return (clamp(cx - cut_h // 2, h), clamp(cy - cut_w // 2, w), clamp(cx + cut_h // 2, h), clamp(cy + cut_w // 2, w))


def sample_crop(aug, seed, image, sample, w, h):
    """{"random_crop": (i, j), "rrc": (i, j, h, w)} for the configured ones."""
    padded, before_rrc, _ = stage_sizes(aug, w, h)
    out = {}
    if "random_crop" in aug:
        r = Philox(seed, image, sample, S_RANDOM_CROP)
        th, tw = _hw(aug["random_crop"]["size"])
        pw, ph = padded
        i = r.range_inclusive(0, ph - th) if ph > th else 0
        j = r.range_inclusive(0, pw - tw) if pw > tw else 0
        out["random_crop"] = (i, j)
    if "random_resized_crop" in aug:
        r = Philox(seed, image, sample, S_CROP)
        out["rrc"] = sample_rrc(r, aug["random_resized_crop"], *before_rrc)
    return out


def sample_side(aug, seed, image, sample, side, w, h):
    stream = lambda s: Philox(seed, image, sample, s + side)  # noqa: E731
    out = {}
    if "random_horizontal_flip" in aug:
        out["flip"] = stream(S_FLIP).chance_below(aug["random_horizontal_flip"]["p"])
    if "rand_augment" in aug:
        out["ra"] = sample_rand_augment(stream(S_RANDAUG), aug["rand_augment"])
    if "random_erase" in aug:
        out["erase"] = sample_erase(stream(S_ERASE), aug["random_erase"], w, h)
    return out


def sample(aug, seed, num_samples, size_of, image, sample_, candidates):
    """Draw::sample: {"crop", "side", and with mixing "id2", "sample2",
    "pair_crop", "pair_side", "mixup" (lam or None), "cutmix" ((lam, box) or
    None)}; `size_of(id)` is an image's decoded (w, h), `candidates` the
    usable images of its mixing group in work order."""
    w, h = size_of(image)
    ow, oh = stage_sizes(aug, w, h)[2]
    out = {"crop": sample_crop(aug, seed, image, sample_, w, h),
           "side": sample_side(aug, seed, image, sample_, 0, ow, oh)}
    if "mixup" in aug or "cutmix" in aug:
        r = Philox(seed, image, sample_, S_PAIR)
        id2 = candidates[r.below(len(candidates))]
        sample2 = r.below(num_samples)
        w2, h2 = size_of(id2)
        out.update(id2=id2, sample2=sample2, pair_crop=sample_crop(aug, seed, id2, sample2, w2, h2),
                   pair_side=sample_side(aug, seed, image, sample_, PAIR_SIDE, ow, oh))
        if "mixup" in aug:
            c, r = aug["mixup"], Philox(seed, image, sample_, S_MIXUP)
            ok = c["alpha"] != 0.0 and r.chance_at_most(c["p"])
            out["mixup"] = r.beta(c["alpha"], c["alpha"]) / c["div_by"] if ok else None
        if "cutmix" in aug:
            c, r = aug["cutmix"], Philox(seed, image, sample_, S_CUTMIX)
            out["cutmix"] = None
            if c["alpha"] != 0.0 and r.chance_at_most(c["p"]):
                lam = r.beta(c["alpha"], c["alpha"])
                out["cutmix"] = (lam, cutmix_box(r, lam, ow, oh))
    return out
