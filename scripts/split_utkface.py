#!/usr/bin/env python3
"""Splits the UTKFace folder into train / validation / test lists (file names only).

    python3 scripts/split_utkface.py DIR [--seed 31] [--valid 0.1] [--test 0.1] [--out configs/splits]

Every image whose name follows UTKFace's pattern (`[age]_[gender]_[race]_[date&time].jpg…`, age
0–100) is ranked by the SHA-256 of `<seed>:<file name>`, and the ranking is cut into the three
parts. The ranking depends on the seed and the names alone (no random generator, no file order),
so the same folder gives the same lists on any machine and Python version. The lists are sorted.
UTKFace names no subject, so a person photographed twice may fall into two parts.
"""

import argparse
import hashlib
import os
import re
import sys

PATTERN = re.compile(r"^(\d+)_[^_]+_[^_]+_.+\.(jpg|jpeg|png)$", re.IGNORECASE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir")
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--valid", type=float, default=0.1)
    parser.add_argument("--test", type=float, default=0.1)
    parser.add_argument("--out", default="configs/splits")
    args = parser.parse_args()
    try:
        names = sorted(os.listdir(args.dir))
    except OSError as e:
        print(f"split_utkface: cannot read the folder {args.dir}: {e.strerror}", file=sys.stderr)
        return 1
    kept = [n for n in names if (m := PATTERN.match(n)) and int(m.group(1)) <= 100]
    if not kept:
        print(f"split_utkface: {args.dir} holds no image named [age]_[gender]_[race]_[date&time].jpg",
              file=sys.stderr)
        return 1
    ranked = sorted(kept, key=lambda n: hashlib.sha256(f"{args.seed}:{n}".encode()).hexdigest())
    n_test = round(len(ranked) * args.test)
    n_valid = round(len(ranked) * args.valid)
    parts = {
        "test": ranked[:n_test],
        "valid": ranked[n_test:n_test + n_valid],
        "train": ranked[n_test + n_valid:],
    }
    os.makedirs(args.out, exist_ok=True)
    for part, files in parts.items():
        path = os.path.join(args.out, f"utkface-{part}.txt")
        with open(path + ".tmp", "w") as f:
            f.write("".join(n + "\n" for n in sorted(files)))
        os.replace(path + ".tmp", path)
        print(f"{path}: {len(files)} images")
    print(f"left out {len(names) - len(kept)} files (not the pattern, or age above 100)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
