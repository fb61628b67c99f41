"""Probe: does memorising rare users cause the TaobaoAd twin's one-epoch collapse? Copies a generated twin cache
and stores every userid with fewer than 10 training rows as the OOV id (what FuxiCTR's min_count 10 does to the
real file), in all three splits; labels, oracle and group ids are untouched. Then run tb5u.yaml on the copy.

  ctrbench data twin taobaoad_x1 --rows 100000                       # the suite's twin, in ~/.cache/ctrbench
  python results/interformer/diagnostics/v5/fold_rare_users.py ~/.cache/ctrbench /tmp/dr
  ctrbench run results/interformer/diagnostics/v5/tb5u.yaml --store /tmp/tb5u.sqlite --data-root /tmp/dr \
      --executor process --workers 2"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from ctrbench.data.synthetic import GENERATOR_VERSION

src_root, dst_root = Path(sys.argv[1]).expanduser(), Path(sys.argv[2])
name = f"taobaoad_x1/twin-v{GENERATOR_VERSION}-100000r-seed0"
dst = dst_root / name
shutil.rmtree(dst, ignore_errors=True)
shutil.copytree(src_root / name, dst)
manifest = json.loads((dst / "manifest.json").read_text())
oov = manifest["vocab_sizes"]["userid"] - 1
blocks = {s: np.memmap(dst / s / "categorical.bin", dtype="<i4", mode="r+",
                       shape=tuple(manifest["splits"][s]["blocks"]["categorical"]["shape"])) for s in manifest["splits"]}
col = [f["name"] for f in manifest["spec"]["features"] if f["kind"] == "categorical"].index("userid")
rare = np.bincount(blocks["train"][:, col], minlength=oov + 1) < 10
print(f"users with >= 10 training rows: {int((~rare[1:oov]).sum())} of {oov - 1}")
for split, cat in blocks.items():
    cat[:, col] = np.where(rare[cat[:, col]], oov, cat[:, col])
    cat.flush()
    print(f"{split}: {float((cat[:, col] == oov).mean()):.3f} of rows now OOV")
