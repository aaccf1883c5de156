#!/usr/bin/env bash
# What bench/gpu.py needs on the GPU machine, made inside the repository in folders that git
# ignores (listed in .git/info/exclude, not in .gitignore), for the device tool to carry:
#   .whl/                 manylinux x86_64 CPython 3.12 wheels of what that machine lacks, at
#                         this venv's versions: pydantic, pydantic-core, annotated-types,
#                         typing-inspection, typing-extensions (pydantic-core needs >= 4.16,
#                         newer than torch's environments ship), albumentations, albucore and
#                         albucore's compiled stringzilla and simsimd (numpy, scipy, PyYAML and
#                         OpenCV, the rest of their requirements, are there)
#   .gpudata/photos.tar   the first N photos (default 2048, bench/gpu.py's --images) of
#                         ../shared/data/miniplaces-11k.tar: the machine cannot see ../shared
#   .gpudata/commit.txt   the commit they were made at (the copy there has no .git)
# Usage: bash bench/gpu_carry.sh [N]      (PyPI must be reachable; reruns reuse what is there)
#
# Then give the device tool carry [".whl", ".gpudata"] and this command (one line, from the
# repository root; colorize is not installed there, so src goes on PYTHONPATH):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src && PYTHONUNBUFFERED=1 python3 bench/gpu.py --archive .gpudata/photos.tar --out $OUT/gpu.json 2>&1 | tee $OUT/gpu.log
# (the status it returns is tee's; gpu.py's own is 1 when a row FAILs: prefix `set -o pipefail;`
# to get it). At most 8 minutes with the defaults; $OUT/gpu.json and gpu.log come back.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N="${1:-2048}"
VENV_PY="$ROOT/.venv/bin/python"
PIP="${PIP:-python3 -m pip}"
ARCHIVE="$ROOT/../shared/data/miniplaces-11k.tar"
PACKAGES=(pydantic pydantic-core annotated-types typing-inspection typing-extensions
          albumentations albucore stringzilla simsimd)

[[ "$N" =~ ^[0-9]+$ && "$N" -ge 16 ]] || { echo "error: N must be a number >= 16, got $N" >&2; exit 2; }
[[ -x "$VENV_PY" ]] || { echo "error: $VENV_PY not found (make setup): it gives the versions" >&2; exit 2; }
[[ -f "$ARCHIVE" ]] || { echo "error: $ARCHIVE not found (the shared data beside the repository)" >&2; exit 2; }

exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
for folder in /.whl/ /.gpudata/; do
    grep -qxF "$folder" "$exclude" 2>/dev/null || echo "$folder" >> "$exclude"
done

mkdir -p .whl .gpudata
for name in "${PACKAGES[@]}"; do
    version="$("$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")"
    $PIP download -qq --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d .whl "$name==$version"
done

# Every requirement of a carried wheel is carried too, or one the GPU machine has.
python3 - "${PACKAGES[@]}" <<'EOF'
import re, sys, zipfile
from pathlib import Path

carried = {p.lower().replace("_", "-") for p in sys.argv[1:]}
there = {"numpy", "scipy", "pyyaml", "opencv-python-headless", "opencv-python"}
missing = []
for wheel in sorted(Path(".whl").glob("*.whl")):
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:") and "extra ==" not in line:
                req = line.split(":", 1)[1].strip()
                name = re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0].lower().replace("_", "-")
                if "python_version < " in req or name in carried or name in there:
                    continue
                missing.append(f"{wheel.name}: {req}")
if missing:
    sys.exit("error: requirements neither carried nor on the GPU machine:\n  " + "\n  ".join(missing))
EOF

python3 - "$ARCHIVE" "$N" .gpudata/photos.tar <<'EOF'
import io, sys, tarfile

source, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
count = 0
with tarfile.open(source) as src, tarfile.open(out + ".tmp", "w") as dst:
    for member in src:
        if member.isfile() and member.name.lower().endswith((".jpg", ".jpeg", ".png")):
            dst.addfile(member, io.BytesIO(src.extractfile(member).read()))
            count += 1
            if count == n:
                break
if count < n:
    sys.exit(f"error: {source} holds {count} photos, fewer than {n}")
import os
os.replace(out + ".tmp", out)
EOF

{ git rev-parse --short HEAD; } > .gpudata/commit.txt 2>/dev/null || echo unknown > .gpudata/commit.txt
[[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] || \
    sed -i 's/$/ with uncommitted changes/' .gpudata/commit.txt

ls -1 .whl
du -ch .whl .gpudata | tail -1 | sed 's/total/carried in all (.whl, .gpudata)/'
