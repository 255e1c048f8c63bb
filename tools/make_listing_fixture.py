#!/usr/bin/env python3
"""Golden fixture for dr's ImageFolder listing: torchvision's own
`find_classes` + `make_dataset` on a tree with the awkward cases (hidden
class folders, nested folders whose names sort around '/', upper-case and
non-image extensions, a class reached through a symlink, names outside ASCII).

    python3 tools/make_listing_fixture.py      # needs torchvision

Writes tests/fixtures/listing.json: the tree (files and symlinks, relative
paths) and torchvision's listing (relative path, class index) in order.
tests/listing_golden.rs rebuilds the tree and compares dr's listing.
"""

import json
import os
import tempfile

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

FILES = [
    "cat/1.jpg", "cat/10.jpg", "cat/2.JPG", "cat/a-b/x.png", "cat/a/y.png", "cat/a/b/z.jpeg",
    "cat/a.b/w.webp", "cat/notes.txt", "cat/.hidden.jpg", "cat/Zed.PNG", "cat/ä.jpg", "cat/b.tif",
    "dog/x.bmp", "dog/y.ppm", "dog/z.pgm", "dog/w.tiff", "dog/sub dir/k.jpg", "dog/sub-dir/j.jpg",
    "Bird/0.jpg", ".hidden_class/h.jpg", "a-b/q.jpg", "a b/r.jpg", "émeu/s.jpg",
    "zebra/deep/er/t.jpg", "zebra/deep-er/u.jpg", "zebra/deep.er/v.jpg",
]
SYMLINKS = [("linked", "dog")]  # a class that is a symlink to another folder
FILES_IN_ROOT = ["stray.jpg"]   # files in the root are not classes


def main():
    with tempfile.TemporaryDirectory() as root:
        for f in FILES + FILES_IN_ROOT:
            p = os.path.join(root, f)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            open(p, "wb").close()
        for name, target in SYMLINKS:
            os.symlink(target, os.path.join(root, name))
        classes, idx = find_classes(root)
        samples = make_dataset(root, idx, IMG_EXTENSIONS)
        listing = [[os.path.relpath(p, root), label] for p, label in samples]
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "listing.json")
    import torchvision
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"torchvision": torchvision.__version__, "files": FILES + FILES_IN_ROOT,
                   "symlinks": SYMLINKS, "classes": classes, "listing": listing}, f, indent=1, ensure_ascii=False)
    print(f"wrote {out}: {len(classes)} classes, {len(listing)} images")


if __name__ == "__main__":
    main()
