"""The paper's published numbers (its Tables 3, 4, 7-9 and section 6; see docs/study.md), as labelled constants.

Everything here is *the paper's*, single-seed result (its Table 3 footnote: one run
per configuration), never a measurement of this package. The report prints these
next to the measured values, always labelled "paper".

Keys are ``(actor_lr, critic_lr)`` float tuples, or ``actor_lr`` floats.
"""

from __future__ import annotations

from typing import Final

#: The paper's training length; its Table 3 writes 2000 for "never stopped".
PAPER_MAX_EPISODES: Final[int] = 2000

#: The learning rates of the paper's grid (section 4.1).
PAPER_LRS: Final[tuple[float, ...]] = (0.0001, 0.001, 0.01, 0.1)

#: Table 3: stopping episode per (actor_lr, critic_lr); 2000 = no stopping.
TABLE3_STOP_EPISODES: Final[dict[tuple[float, float], int]] = {
    (0.0001, 0.0001): 2000,
    (0.0001, 0.001): 2000,
    (0.0001, 0.01): 2000,
    (0.0001, 0.1): 696,
    (0.001, 0.0001): 2000,
    (0.001, 0.001): 2000,
    (0.001, 0.01): 2000,
    (0.001, 0.1): 763,
    (0.01, 0.0001): 233,
    (0.01, 0.001): 233,
    (0.01, 0.01): 233,
    (0.01, 0.1): 247,
    (0.1, 0.0001): 215,
    (0.1, 0.001): 217,
    (0.1, 0.01): 176,
    (0.1, 0.1): 161,
}

#: Table 3's category column, as printed by the paper.
TABLE3_CATEGORIES: Final[dict[tuple[float, float], str]] = {
    k: ("No stopping" if v >= PAPER_MAX_EPISODES else "Late (>500)" if v > 500 else "Early (<300)")
    for k, v in TABLE3_STOP_EPISODES.items()
}

#: Table 4: output pre-activation range (min, max) per actor_lr and the paper's
#: "gradient flow" column.
TABLE4_PREACT_RANGE: Final[dict[float, tuple[float, float]]] = {
    0.1: (-1_068_000.0, 1_070_000.0),
    0.01: (-5_200.0, 5_100.0),
    0.001: (-50.0, 50.0),
    0.0001: (-3.0, 3.0),
}
TABLE4_GRADIENT_FLOW: Final[dict[float, str]] = {
    0.1: "≈ 0",
    0.01: "≈ 0",
    0.001: "< 1%",
    0.0001: "Normal",
}

#: Table 7: stopping episodes, small actor (64->32) vs large actor (512->128).
TABLE7_SMALL_VS_LARGE: Final[dict[tuple[float, float], tuple[int, int]]] = {
    (0.1, 0.1): (161, 161),
    (0.1, 0.01): (176, 194),
    (0.1, 0.001): (217, 245),
    (0.1, 0.0001): (215, 238),
    (0.01, 0.1): (247, 253),
    (0.01, 0.01): (233, 238),
    (0.01, 0.001): (233, 246),
    (0.01, 0.0001): (233, 240),
}

#: Table 8: stopping episodes, ReLU hidden vs linear hidden activations.
TABLE8_RELU_VS_LINEAR: Final[dict[tuple[float, float], tuple[int, int]]] = {
    (0.1, 0.1): (161, 301),
    (0.1, 0.01): (176, 251),
    (0.1, 0.001): (217, 250),
    (0.1, 0.0001): (215, 269),
    (0.01, 0.1): (247, 307),
    (0.01, 0.01): (233, 307),
    (0.01, 0.001): (233, 286),
    (0.01, 0.0001): (233, 276),
}

#: Table 9: pre-activation magnitude (+-) per actor_lr, ReLU vs linear hidden.
TABLE9_PREACT_RELU_VS_LINEAR: Final[dict[float, tuple[float, float]]] = {
    0.1: (1.07e6, 1.83e7),
    0.01: (5.2e3, 8.1e4),
}

#: Section 6.8: the measured actor/critic gradient ratio range.
PAPER_RHO_RANGE: Final[tuple[float, float]] = (1e-8, 1e-4)

#: Section 6.3 (thesis, 10 seeds): configurations that consistently improved.
PAPER_VIABLE_COUNT: Final[int] = 1
PAPER_VIABLE_TOTAL: Final[int] = 16
PAPER_VIABLE_CONFIGS: Final[tuple[tuple[float, float], ...]] = ((0.0001, 0.001),)

#: Preset names whose comparison with the baseline the paper tabulates.
TABLE7_PRESET: Final[str] = "large-actor"
TABLE8_PRESET: Final[str] = "linear-hidden"


def paper_category(stop_episode: float, max_episodes: float = PAPER_MAX_EPISODES) -> str:
    """The paper's Table 3 category for a stopping episode (``max_episodes`` = never stopped).

    The paper only uses "No stopping", "Late (>500)" and "Early (<300)"; values in
    300-500 (which it never observed) are called "Intermediate (300-500)". The
    thresholds are absolute episode numbers and do not scale with the run length:
    a stop is a time after the start of training, not a fraction of the run.
    """
    if stop_episode >= max_episodes:
        return "No stopping"
    if stop_episode > 500:
        return "Late (>500)"
    if stop_episode >= 300:
        return "Intermediate (300-500)"
    return "Early (<300)"


def lookup(table: dict, actor_lr: float, critic_lr: float | None = None):
    """Find a paper entry by learning rate(s), tolerant to float formatting (rel. 1e-6)."""
    for key, value in table.items():
        if critic_lr is None:
            if _close(key, actor_lr):
                return value
        elif _close(key[0], actor_lr) and _close(key[1], critic_lr):
            return value
    return None


def _close(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) <= 1e-6 * max(abs(float(a)), abs(float(b)))
