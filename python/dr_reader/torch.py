"""A PyTorch Dataset over a dr reinforced dataset, like ml-dr's
`ReinforcedDataset`: each item picks one stored sample of the image at
random, loads the image (and its pair) from the listing, replays the stored
augmentation with ml-dr's `Compose.reapply`, and returns
`(image tensor, dense target)`.

    from dr_reader.torch import ReinforcedDataset
    ds = ReinforcedDataset("imagenet-plus/", root="imagenet/train")   # ml-dr importable

Needs torch, torchvision, Pillow and ml-dr's `dr.transforms` on the path
(a clone of apple/ml-dr: `sys.path.insert(0, "/path/to/ml-dr")`); the core
reader (`dr_reader.open`) needs numpy only.
"""

import os
import random

import numpy as np

from . import Reinforced


class ReinforcedDataset:
    """`ds[i]` → (float tensor [3, H, W], float tensor [num_classes]).

    Items are the images with records to train on (`Reinforced.usable()`):
    bad images, whose records are flagged invalid, are left out, so
    `len(ds)` counts what `for x in ds` and a shuffled DataLoader see;
    `ds.image_id(i)` is item i's image id (its row of images.tsv)."""

    def __init__(self, path, root=None, densify="smooth", seed=None, allow_incomplete=False):
        try:
            import torch  # noqa: F401
            from PIL import Image  # noqa: F401
        except ImportError as e:
            raise ImportError(f"dr_reader.torch needs torch and Pillow: {e}") from e
        try:
            import dr.transforms as T_dr
        except ImportError as e:
            raise ImportError(
                "replaying the stored augmentation uses ml-dr's Compose.reapply: put a clone of "
                "apple/ml-dr on sys.path (sys.path.insert(0, '/path/to/ml-dr'))") from e
        self.data = Reinforced(path, allow_incomplete=allow_incomplete)
        self.ids = self.data.usable()
        self.root = root or self.data.manifest["source"]
        aug = {k: {kk: vv for kk, vv in v.items() if kk != "interpolation"}
               for k, v in self.data.augmentation.items()}
        self.transforms = T_dr.compose_from_config(aug)
        self.densify = densify
        self.rng = random.Random(seed)

    def __len__(self):
        return len(self.ids)

    def __repr__(self):
        return (f"<dr_reader.torch.ReinforcedDataset {self.data.path!r}: {len(self)} images "
                f"({len(self.data) - len(self)} bad or unwritten left out) x {self.data.num_samples} samples, "
                f"images from {self.root!r}>")

    def image_id(self, i):
        """The image id (row of images.tsv) of item `i`."""
        return self.ids[i]

    def _image(self, i):
        from PIL import Image

        with open(os.path.join(self.root, self.data.paths[i]), "rb") as f:
            return Image.open(f).convert("RGB")

    def __getitem__(self, item):
        import torch

        i = self.ids[item]  # IndexError past the end, as a sequence's
        s = self.rng.randrange(self.data.num_samples)
        # ml-dr's own route: its decompress fills the parameter-free
        # transforms (to_tensor, normalize) that reapply needs.
        params = self.transforms.decompress(self.data.compressed(i, s))
        img2 = self._image(params["id2"]) if "id2" in params else None
        img, _ = self.transforms.reapply(self._image(i), params, img2)
        target = torch.from_numpy(np.asarray(self.data.probs(i, s, dense=True, method=self.densify)))
        return img, target
