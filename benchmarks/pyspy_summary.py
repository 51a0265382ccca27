"""Summarise a py-spy collapsed-stack file (`py-spy record --format raw`): the share of
samples in each function, inclusive (anywhere on the stack) and self (the leaf).

    python benchmarks/pyspy_summary.py py-spy-d.txt [--top 30] [--match predict,flush]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"].split("site-packages/")[-1].split("/src/")[-1]
    return f"{match['func']} ({file})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    inclusive: Counter = Counter()
    leaf: Counter = Counter()
    total = 0
    with open(args.file) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [short(f) for f in stack.split(";") if f]
            for frame in set(frames):
                inclusive[frame] += n
            if frames:
                leaf[frames[-1]] += n
    print(f"{total} samples")
    print("\ninclusive:")
    for frame, n in inclusive.most_common(args.top):
        print(f"  {n / total:6.1%}  {frame}")
    print("\nself:")
    for frame, n in leaf.most_common(args.top):
        print(f"  {n / total:6.1%}  {frame}")


if __name__ == "__main__":
    main()
