"""How failures are written down (gradasym.errors): the one-line form and the summary's form."""

from __future__ import annotations

from gradasym.errors import describe, failure_text


def _raise_deep(depth: int) -> None:
    if depth == 0:
        raise ValueError("lr must be positive")
    _raise_deep(depth - 1)


def test_describe_names_the_type_and_the_message() -> None:
    assert describe(ValueError("lr must be positive")) == "ValueError: lr must be positive"
    assert describe(KeyError("x")) == "KeyError: 'x'"


def test_failure_text_starts_with_the_line_and_keeps_the_innermost_frames() -> None:
    try:
        _raise_deep(12)
    except ValueError as exc:
        text = failure_text(exc, frames=3)
    first, rest = text.split("\n", 1)
    assert first == "ValueError: lr must be positive"
    assert rest.startswith("Traceback (most recent call last):") and rest.rstrip().endswith(first)
    frames = [line for line in rest.splitlines() if line.startswith("  File ")]
    assert len(frames) == 3 and all("in _raise_deep" in f for f in frames)  # innermost 3 of 14
    assert 'raise ValueError("lr must be positive")' in rest            # down to the raise itself
    assert "test_failure_text" not in rest                               # not the outermost frame
