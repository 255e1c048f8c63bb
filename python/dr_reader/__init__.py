"""Reader for dr's reinforced datasets (`dr reinforce` output), numpy and
the standard library only.

    import dr_reader
    ds = dr_reader.open("imagenet-plus/")
    len(ds), ds.num_samples, ds.classes[:3]
    recs = ds.records(17)             # numpy structured array [NS], a view of the shard (np.memmap)
    ds.params(17, 0)                  # ml-dr's dict form: {"random_resized_crop": ((i, j, h, w),), ...}
    ds.compressed(17, 0)              # ml-dr's compressed list (what its .pth.tar files hold)
    ds.probs(17, 0)                   # ([values], [class ids]), largest first
    ds.probs(17, 0, dense=True)       # [num_classes] float32, ml-dr's densify ("smooth" or "zeros")
                                      # (--label-mode sampled: bincount(draws) / k, unbiased)
    ds.class_ids(17, 0)               # the record's class ids (top-k classes or sampled draws), int64

Label encodings (manifest settings, absent = the first): prob_format "f16"
(`probs`, <f2) or "u8log" (`prob_codes`, one byte: U8LOG[code], 0 or
2^(-16 (255 - code) / 254), within 2.183% of p from 2^-16 to 1); class_ids
"bytes" (`classes` / `draws`, <u2 or <u4) or "packed" (`classes_packed` /
`draws_packed`, record.class_id_bits bits an id, little-endian bit order).

Layout (OUT/manifest.json): one fixed-width record per (image, sample),
an image's NS records together, images in the order of order.npy, split
into shard files by work-order position. Parameters of transforms that
happened are flag bits; RandAugment ops are `(index << 1) | negated` with
the magnitude from the manifest's table.

Parameters (settings.params, absent = stored): `dr reinforce --params
derived` records keep only `flags` (INVALID or 0); this reader regenerates
each usable sample's parameters with dr_reader.sampler, a port of dr's
sampler of the same PARAMS_SAMPLER_VERSION (a dataset of another version is
refused), from the seed, the work order, the mixing groups and the decoded
sizes images.tsv keeps. `params`, `compressed` and `derived_record` give
them; `records` stays the stored bytes.
"""

import bisect
import builtins
import json
import os

import warnings

import numpy as np

from . import sampler

__all__ = ["open", "Reinforced", "check_pillow"]

RA_OPS = [
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
    "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
]
INVALID, FLIP, PAIR_FLIP, RA, PAIR_RA, ERASE, PAIR_ERASE, MIXUP, CUTMIX = (1 << i for i in range(9))
# Transforms with a record, in ml-dr's pipeline order.
WITH_PARAMS = ["resize", "random_crop", "random_resized_crop", "random_horizontal_flip", "rand_augment",
               "random_erase", "mixup", "cutmix"]


def open(path, allow_incomplete=False):  # noqa: A001 (the module's entry point, like io.open)
    """The dataset at `path`. An unfinished one (status "running": the job
    was stopped) is refused unless `allow_incomplete`, since its images
    without written shards have no records."""
    return Reinforced(path, allow_incomplete=allow_incomplete)


def check_pillow(pass_order):
    """Warns when the installed Pillow resizes in another pass order than the
    records assume (`resize_pass_order`: Pillow 13 runs the vertical pass
    first when the height shrinks much more; up to 12.3 never): replayed
    crops then differ by a level on some pixels. Returns the installed
    order, or None without Pillow."""
    try:
        import PIL
    except ImportError:
        return None
    installed = "pillow13" if int(PIL.__version__.split(".")[0]) >= 13 else "pillow12"
    if installed != pass_order:
        warnings.warn(f"these records assume resize_pass_order {pass_order}, but Pillow {PIL.__version__} "
                      f"resizes as {installed}: replayed crops differ by a level on some pixels", stacklevel=2)
    return installed


def _dtype(descr):
    return np.dtype([(f[0], f[1]) if len(f) == 2 else (f[0], f[1], tuple(f[2])) for f in descr])


SAMPLER_VERSION = 1

# --prob-format u8log: what each code stores (dr's labels::u8log::table,
# equal bit for bit: tests/u8log_labels.rs). 0 is 0; q in 1..255 is
# 2^(-16 (255 - q) / 254), from 2^-16 to 1 evenly in log p.
U8LOG = np.array([0.0] + [2.0 ** (-16.0 * (255 - q) / 254.0) for q in range(1, 256)], np.float32)
U8LOG_MAX_REL_ERROR = 0.02183


def _coding(path, m):
    """(prob_format, class_ids) of the records; absent fields are the
    formats every older dataset has. Unknown ones are refused, never misread."""
    s = m["settings"]
    probs, ids = s.get("prob_format", "f16"), s.get("class_ids", "bytes")
    fix = "Fix: read it with the dr_reader of the dr that wrote it (manifest 'writer') or a newer one"
    if probs not in ("f16", "u8log"):
        raise ValueError(f"{path}/manifest.json: prob_format {probs!r} is not one this reader knows (f16, u8log). {fix}")
    if ids not in ("bytes", "packed"):
        raise ValueError(f"{path}/manifest.json: class_ids {ids!r} is not one this reader knows (bytes, packed). {fix}")
    if ids == "packed" and not m["record"].get("class_id_bits"):
        raise ValueError(f"{path}/manifest.json: packed class ids without record.class_id_bits. {fix}")
    return probs, ids


def _params_mode(path, m):
    """"stored" or "derived" (settings.params; absent is stored). Another
    mode, or a sampler version other than this reader's, is refused: its
    regenerated parameters would not be the ones the teachers saw."""
    p = m["settings"].get("params")
    if p is None:
        return "stored"
    if p.get("mode") != "derived":
        raise ValueError(f"{path}/manifest.json: params mode {p.get('mode')!r} is not one this reader knows "
                         "(stored, derived). Fix: read it with the dr_reader of the dr that wrote it "
                         "(manifest 'writer') or a newer one")
    if p.get("sampler_version") != sampler.PARAMS_SAMPLER_VERSION:
        raise ValueError(f"{path}/manifest.json: its augmentation parameters are derived from the seed by params "
                         f"sampler version {p.get('sampler_version')}, but this reader has version "
                         f"{sampler.PARAMS_SAMPLER_VERSION}, which draws other values. Fix: read it with the "
                         f"dr_reader of a dr of params sampler version {p.get('sampler_version')} (the manifest's "
                         "'writer' is one), or rerun `dr reinforce --params stored` into a new --out")
    return "derived"


def unpack_ids(field, k, bits):
    """`k` class ids of `bits` bits each from a packed field (uint8 bytes):
    id i is bits [i bits, (i + 1) bits), bit 0 the low bit of byte 0."""
    b = np.unpackbits(np.asarray(field, np.uint8), bitorder="little")[:k * bits].reshape(k, bits)
    return b.astype(np.int64) @ (np.int64(1) << np.arange(bits, dtype=np.int64))


def _label_mode(path, m):
    """"topk" or "sampled" (settings.labels; absent is topk). A mode or
    sampler version this reader does not know is refused, never misread."""
    labels = m["settings"].get("labels")
    if labels is None:
        return "topk"
    fix = "Fix: read it with the dr_reader of the dr that wrote it (manifest 'writer') or a newer one"
    if labels.get("mode") != "sampled":
        raise ValueError(f"{path}/manifest.json: label mode {labels.get('mode')!r} is not one this reader "
                         f"knows (topk, sampled). {fix}")
    if labels.get("sampler_version") != SAMPLER_VERSION:
        raise ValueError(f"{path}/manifest.json: sampled labels of sampler version "
                         f"{labels.get('sampler_version')}; this reader knows version {SAMPLER_VERSION}. {fix}")
    if labels.get("proposal_t") is not None:
        raise ValueError(f"{path}/manifest.json: sampled labels with importance weights (proposal_t "
                         f"{labels['proposal_t']}); this reader reads only unweighted draws. {fix}")
    return "sampled"


class Reinforced:
    def __init__(self, path, allow_incomplete=False):
        self.path = path
        manifest = os.path.join(path, "manifest.json")
        if not os.path.isfile(manifest):
            raise FileNotFoundError(f"{path}: no manifest.json, so not a reinforced dataset "
                                    "(give the folder `dr reinforce --out` wrote)")
        with builtins.open(manifest) as f:
            self.manifest = m = json.load(f)
        if m.get("format") != "dr-reinforced" or m.get("version") != 1:
            raise ValueError(f"{path}: not a dr reinforced dataset of format version 1")
        task = m.get("task")
        total = task["shards"][1] - task["shards"][0] if task else m["shard_count"]
        if m["status"] != "complete" and not allow_incomplete:
            raise ValueError(f"{path} is incomplete: {len(m['shards'])} of {total} shards written (status "
                             f"{m['status']}). Rerun the `dr reinforce` command to finish it, or pass "
                             "allow_incomplete=True to read what is there")
        self.dtype = _dtype(m["record"]["dtype"])
        if self.dtype.itemsize != m["record"]["size"]:
            raise ValueError(f"{path}: record dtype is {self.dtype.itemsize} bytes, manifest says {m['record']['size']}")
        self.num_samples = m["record"]["num_samples"]
        self.topk = m["record"]["topk"]
        self.label_mode = _label_mode(path, m)
        self.prob_format, self.class_id_format = _coding(path, m)
        self.params_mode = _params_mode(path, m)
        self.class_id_bits = m["record"].get("class_id_bits")
        self.num_classes = m["settings"]["num_classes"]
        self.classes = m.get("classes", [])
        self.config = m["settings"]["config"]
        self.augmentation = self.config["image_augmentation"]
        self.resize_pass_order = self.config.get("resize_pass_order", "pillow13")
        check_pillow(self.resize_pass_order)
        self.magnitudes = m["record"].get("rand_augment_magnitudes", [])
        if "rand_augment" in self.augmentation and len(self.magnitudes) != len(RA_OPS):
            raise ValueError(f"{path}: the manifest has no RandAugment magnitude table (written by an older dr)")
        self.order = np.load(os.path.join(path, "order.npy"))
        self.position = np.empty_like(self.order)
        self.position[self.order] = np.arange(len(self.order), dtype=self.order.dtype)
        self.paths, self.labels, self.sizes = [], [], []
        with builtins.open(os.path.join(path, "images.tsv"), encoding="utf-8") as f:
            next(f)
            for line in f:
                cols = line.rstrip("\n").split("\t")
                self.paths.append(cols[1])
                self.labels.append(int(cols[2]))
                # Decoded (w, h), kept by derived-parameter datasets for usable images.
                self.sizes.append((int(cols[5]), int(cols[6])) if len(cols) == 7 and cols[5] != "-" else None)
        self.shards = sorted(m["shards"], key=lambda s: s["positions"][0])
        self._starts = [s["positions"][0] for s in self.shards]
        self._maps = {}

    def __len__(self):
        return len(self.order)

    def __repr__(self):
        return (f"<dr_reader.Reinforced {self.path!r}: {len(self)} images x {self.num_samples} samples, "
                f"{self._labels_repr()} of {self.num_classes} classes, status {self.manifest['status']}, "
                f"{len(self) - len(self.usable())} without records (bad or not written)>")

    def _labels_repr(self):
        return f"top-{self.topk}" if self.label_mode == "topk" else f"{self.topk} sampled draws"

    def written(self, image):
        """Whether image `image`'s records are in a shard already written."""
        pos = int(self.position[image])
        k = bisect.bisect_right(self._starts, pos) - 1
        return k >= 0 and self.shards[k]["positions"][0] <= pos < self.shards[k]["positions"][1]

    def usable(self):
        """Ids of the images with records to train on: in a written shard and
        not bad (a bad image's records are flagged invalid), ascending."""
        if getattr(self, "_usable", None) is None:
            ids = []
            for shard in self.shards:
                a, b = shard["positions"]
                flags = self._map(shard["file"])["flags"][::self.num_samples]
                ok = (flags.astype(np.int64) & INVALID) == 0
                ids.extend(int(self.order[a + j]) for j in np.flatnonzero(ok))
            self._usable = sorted(ids)
        return self._usable

    def _map(self, f):
        if f not in self._maps:
            self._maps[f] = np.memmap(os.path.join(self.path, f), dtype=self.dtype, mode="r")
        return self._maps[f]

    def _shard(self, image):
        pos = int(self.position[image])
        k = bisect.bisect_right(self._starts, pos) - 1
        if k < 0 or not (self.shards[k]["positions"][0] <= pos < self.shards[k]["positions"][1]):
            raise KeyError(f"image {image} is in a shard not written yet (status {self.manifest['status']})")
        return self.shards[k], pos

    def records(self, image):
        """Image `image`'s NS records: a structured array viewing the shard."""
        shard, pos = self._shard(image)
        start = (pos - shard["positions"][0]) * self.num_samples
        return self._map(shard["file"])[start:start + self.num_samples]

    def record(self, image, sample):
        return self.records(image)[sample]

    def valid(self, image, sample=0):
        return not int(self.record(image, sample)["flags"]) & INVALID

    # --- parameters -----------------------------------------------------

    def _side(self, r, pair):
        """{transform: record} of the image (pair=False) or its pair."""
        p = "pair_" if pair else ""
        flags = int(r["flags"])
        bit = lambda a, b: bool(flags & (b if pair else a))  # noqa: E731
        aug, out = self.augmentation, {}
        if "resize" in aug:
            s = aug["resize"]["size"]
            out["resize"] = list(s) if isinstance(s, list) else [s]
        if "random_crop" in aug:
            out["random_crop"] = tuple(int(v) for v in r[p + "random_crop"])
        if "random_resized_crop" in aug:
            out["random_resized_crop"] = tuple(int(v) for v in r[p + "rrc"])
        if "random_horizontal_flip" in aug:
            out["random_horizontal_flip"] = bit(FLIP, PAIR_FLIP)
        if "rand_augment" in aug:
            if bit(RA, PAIR_RA):
                ops = []
                for code in r[p + "ra_ops"]:
                    op, neg = int(code) >> 1, int(code) & 1
                    m = self.magnitudes[op]
                    ops.append((op, -m if neg else m))
                out["rand_augment"] = ops
            else:
                out["rand_augment"] = None
        if "random_erase" in aug:
            out["random_erase"] = tuple(int(v) for v in r[p + "erase"]) if bit(ERASE, PAIR_ERASE) else None
        return out

    def _mixing(self, r):
        flags = int(r["flags"])
        mixup = float(r["mixup_lam"]) if "mixup" in self.augmentation and flags & MIXUP else None
        cutmix = None
        if "cutmix" in self.augmentation and flags & CUTMIX:
            cutmix = [float(r["cutmix_lam"])] + [int(v) for v in r["cutmix_box"]]
        return mixup, cutmix

    def derived_record(self, image, sample):
        """A derived-parameter dataset's (image, sample) parameters as a
        stored record's fields would hold them (a dict: "flags", "pair",
        "rrc", "ra_ops", "mixup_lam", ...), regenerated by
        dr_reader.sampler; None for a bad image."""
        if int(self.record(image, sample)["flags"]) & INVALID:
            return None
        if self.sizes[image] is None:
            raise ValueError(f"{self.path}/images.tsv: image {image} has no decoded size, which derived "
                             f"parameters need. Fix: run `dr verify {self.path}`")
        g = self.config["mixing_group"]
        g0 = int(self.position[image]) // g * g
        candidates = [int(i) for i in self.order[g0:g0 + g] if self.sizes[int(i)] is not None]
        seed = self.manifest["settings"]["seed"]
        p = sampler.sample(self.augmentation, seed, self.num_samples, lambda i: self.sizes[i], image, sample,
                           candidates)
        aug, r, flags = self.augmentation, {}, 0

        def side(prefix, crop, s, bits):
            nonlocal flags
            if "random_crop" in crop:
                r[prefix + "random_crop"] = crop["random_crop"]
            if "rrc" in crop:
                r[prefix + "rrc"] = crop["rrc"]
            flags |= bits[0] if s.get("flip") else 0
            if s.get("ra") is not None:
                flags |= bits[1]
                r[prefix + "ra_ops"] = [op << 1 | neg for op, neg in s["ra"]]
            if s.get("erase") is not None:
                flags |= bits[2]
                r[prefix + "erase"] = s["erase"]

        side("", p["crop"], p["side"], (FLIP, RA, ERASE))
        if "id2" in p:
            r["pair"], r["pair_sample"] = p["id2"], p["sample2"]
            side("pair_", p["pair_crop"], p["pair_side"], (PAIR_FLIP, PAIR_RA, PAIR_ERASE))
        if p.get("mixup") is not None:
            flags |= MIXUP
            r["mixup_lam"] = p["mixup"]
        if p.get("cutmix") is not None:
            flags |= CUTMIX
            # Stored as float32, as a stored record holds it.
            r["cutmix_lam"], r["cutmix_box"] = sampler.f32(p["cutmix"][0]), p["cutmix"][1]
        r["flags"] = flags
        if "cutmix" in aug or "mixup" in aug:
            r.setdefault("pair", 0)
        return r

    def _decoded(self, image, sample):
        """(record, mixup, cutmix, mixed, image side, pair side), or None for a bad image."""
        r = self.record(image, sample)
        if int(r["flags"]) & INVALID:
            return None
        if self.params_mode == "derived":
            r = self.derived_record(image, sample)
        mixup, cutmix = self._mixing(r)
        mixed = mixup is not None or cutmix is not None
        return r, mixup, cutmix, mixed, self._side(r, False), self._side(r, True) if mixed else None

    def params(self, image, sample):
        """ml-dr's dict form (what its Compose returns and reapply takes):
        `{name: (record,)}`, or `(record, pair_record)` with "id2" when a
        pair is mixed; RandAugment ops by name. None for a bad image."""
        d = self._decoded(image, sample)
        if d is None:
            return None
        r, mixup, cutmix, mixed, a, b = d
        named = lambda k, v: [(RA_OPS[o], m) for o, m in v] if k == "rand_augment" and v else v  # noqa: E731
        out = {}
        for k in WITH_PARAMS:
            if k == "mixup" and "mixup" in self.augmentation:
                out[k] = mixup
            elif k == "cutmix" and "cutmix" in self.augmentation:
                out[k] = cutmix
            elif k in a:
                out[k] = (named(k, a[k]), named(k, b[k])) if mixed else (named(k, a[k]),)
        if mixed:
            out["id2"] = int(r["pair"])
        return out

    def compressed(self, image, sample):
        """ml-dr's compressed list (`Compose.compress`), as its files hold it."""
        d = self._decoded(image, sample)
        if d is None:
            return None
        r, mixup, cutmix, mixed, a, b = d
        out = []
        if "mixup" in self.augmentation or "cutmix" in self.augmentation:
            out.append(int(r["pair"]) if mixed else None)
        for k in WITH_PARAMS:
            if k == "mixup" and "mixup" in self.augmentation:
                out.append(mixup)
            elif k == "cutmix" and "cutmix" in self.augmentation:
                out.append(cutmix)
            elif k in a:
                out.append([a[k], b[k]] if mixed else a[k])
        return out

    # --- probabilities ----------------------------------------------------

    def probs(self, image, sample, dense=False, method="smooth"):
        """Top-k `([values], [ids])`, largest first; with `dense`, a
        [num_classes] float32 vector by ml-dr's `densify`: "smooth" spreads
        the remaining mass evenly over the other classes, "zeros" puts the
        softmax of the top-k values on their classes (also used when the
        top-k sum above 1). Sampled labels (`label_mode` "sampled") give the
        drawn classes with count / k, most drawn first, and `dense` is the
        unbiased estimate `bincount(draws) / k` whatever `method` says."""
        r = self.record(image, sample)
        if self.label_mode == "sampled":
            return self._sampled(r, dense)
        vals = self._prob_values(r)
        ids = self._ids(r)
        if not dense:
            return vals.tolist(), ids.tolist()
        rest = 1.0 - float(vals.sum(dtype=np.float32))
        if rest < 0.0 and self.prob_format == "u8log" and method == "smooth":
            # u8log rounds each value up by at most 2.183%, so the sum can
            # pass 1: divide by it (each value then within 4.3% of p), as
            # `dr export --format ml-dr` does, rather than take a softmax.
            vals = (vals / vals.sum(dtype=np.float64)).astype(np.float32)
            rest = 0.0
        if method == "zeros" or rest < 0.0:
            e = np.exp(vals - vals.max())
            p = np.zeros(self.num_classes, np.float32)
            p[ids] = e / e.sum()
            return p
        if method != "smooth":
            raise ValueError(f"method {method!r}: smooth or zeros")
        p = np.full(self.num_classes, rest / (self.num_classes - len(vals)), np.float32)
        p[ids] = vals
        return p

    def _prob_values(self, r):
        """The top-k probabilities as float32: f16 values, or u8log codes decoded."""
        if self.prob_format == "u8log":
            return U8LOG[r["prob_codes"]]
        return r["probs"].astype(np.float32)

    def _ids(self, r):
        """The record's class ids (top-k classes or sampled draws) as int64,
        each checked against the class count."""
        name = "draws" if self.label_mode == "sampled" else "classes"
        if self.class_id_format == "packed":
            ids = unpack_ids(r[name + "_packed"], self.topk, self.class_id_bits)
        else:
            ids = r[name].astype(np.int64)
        if len(ids) and int(ids.max()) >= self.num_classes:
            # bincount would return a longer vector, indexing would fail, without a word.
            what = "draws" if name == "draws" else "holds"
            raise ValueError(f"{self.path}: a record {what} class {int(ids.max())} of "
                             f"{self.num_classes}; the shard is damaged. Fix: run `dr verify {self.path}`")
        return ids

    def class_ids(self, image, sample):
        """Sample `sample` of image `image`: its class ids as stored (top-k
        classes largest first, or sampled draws ascending), int64."""
        return self._ids(self.record(image, sample))

    def _sampled(self, r, dense):
        draws = self._ids(r)
        k = len(draws)
        if dense:
            return (np.bincount(draws, minlength=self.num_classes) / k).astype(np.float32)
        ids, counts = np.unique(draws, return_counts=True)
        # Most drawn first; equal counts in class order (a stable sort).
        by = np.argsort(-counts, kind="stable")
        return (counts[by] / k).astype(np.float32).tolist(), ids[by].tolist()
