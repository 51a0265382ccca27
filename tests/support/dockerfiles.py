"""Dockerfile instructions by stage, for tests/unit/test_dockerfiles.py and
tests/integration/test_image_installs.py."""

from __future__ import annotations

import re
from collections import namedtuple
from pathlib import Path

Instruction = namedtuple("Instruction", "keyword args stage")


def dockerfile(path: Path) -> list[Instruction]:
    """A Dockerfile's instructions (continuations joined, comments dropped), by stage."""
    text = re.sub(r"\\\n", " ", re.sub(r"^\s*#.*\n", "", path.read_text(), flags=re.M))
    instructions, stage = [], -1
    for line in filter(None, (line.strip() for line in text.splitlines())):
        keyword, _, args = line.partition(" ")
        stage += keyword.upper() == "FROM"
        instructions.append(Instruction(keyword.upper(), " ".join(args.split()), stage))
    return instructions


def run_command(instruction: Instruction) -> str:
    """A RUN's shell command without its flags (--mount=...)."""
    return re.sub(r"^(--\S+\s+)+", "", instruction.args)


def from_image(instructions: list[Instruction], stage: int) -> str:
    """A stage's base image, ARG defaults substituted."""
    args = dict(i.args.split("=", 1) for i in instructions if i.keyword == "ARG" and i.stage == -1)
    line = next(i.args for i in instructions if i.keyword == "FROM" and i.stage == stage)
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], line.split()[0])


def pins(path: Path) -> dict[str, str]:
    return {n.lower(): v for n, v in re.findall(r"^([\w.\-]+)==(\S+)", path.read_text(), re.M)}
