"""Readable names: experiment names in the original mrunner's form, and random docker-style sweep names."""

from __future__ import annotations

import re
import secrets

_SEPARATORS = re.compile(r"[ .,_:;-]+")

_ADJECTIVES = (
    "admiring agile amazing bold brave bright calm clever cool crisp daring eager elegant epic fervent "
    "focused gallant gentle happy hopeful jolly keen kind lucid merry modest nifty noble optimistic "
    "patient peaceful quirky quiet relaxed serene sharp silly sleek smart steady sunny swift tender "
    "trusting upbeat vibrant vivid wise witty zealous"
).split()
_NOUNS = (
    "babbage bohr boole curie darwin dijkstra einstein euclid euler faraday fermat feynman gauss "
    "goodall hamilton hopper hypatia kepler knuth lamarr leibniz lovelace maxwell meitner mendel "
    "newton noether pascal planck ramanujan ritchie shannon tesla thompson torvalds turing volta "
    "wiles wozniak yonath"
).split()


def experiment_name(text: str) -> str:
    """Lower-case ``text`` and turn every run of ``[ .,_:;-]`` into one ``-`` (the original's rule)."""
    return _SEPARATORS.sub("-", text.strip().lower()).strip("-") or "experiment"


def random_name() -> str:
    """A docker-style name such as ``brave-turing``; about 2,300 combinations, so add a suffix for uniqueness."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}"


def sweep_id() -> str:
    """A new sweep id: readable and unique enough to type, e.g. ``brave-turing-3f2a9c``."""
    return f"{random_name()}-{secrets.token_hex(3)}"
