"""Java regexes (the botocore model's patterns) translated to Python ``re`` patterns."""

from __future__ import annotations

import re
from typing import Any

import botocore.session
import pytest

from emulator.request.javaregex import compile_java, to_python


def test_every_pattern_of_the_model_translates_to_python() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    patterns: set[str] = set()

    def walk(shape: Any, seen: set[str]) -> None:
        if shape.name in seen:
            return
        seen.add(shape.name)
        if "pattern" in shape.metadata:
            patterns.add(shape.metadata["pattern"])
        children = [*getattr(shape, "members", {}).values()]
        children += [getattr(shape, name, None) for name in ("member", "key", "value")]
        for child in children:
            if child is not None:
                walk(child, seen)

    walk(model.operation_model("CreateTrainingJob").input_shape, set())
    assert any("\\p{" in p for p in patterns)  # the translation is exercised
    assert [p for p in patterns if compile_java(p) is None] == []


def test_java_pattern_translation() -> None:
    assert to_python("a.b") == "a[^\\\n\\\r\x85\u2028\u2029]b"
    assert to_python("[.x]\\.") == "[.x]\\."  # a dot in a class, an escaped dot
    assert to_python("[\\p{Alnum}-]") == "[a-zA-Z0-9-]"
    assert to_python("\\p{Alnum}") == "[a-zA-Z0-9]"
    letters = re.compile(to_python("\\p{L}+"))
    assert letters.fullmatch("Éé日本ß")
    assert not letters.fullmatch("a1")
    assert re.compile(to_python("\\P{N}+")).fullmatch("ab")
    with pytest.raises(ValueError, match="unsupported"):
        to_python("\\p{InGreek}")
