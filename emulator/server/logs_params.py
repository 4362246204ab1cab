"""The requests of the CloudWatch Logs API: members checked as the logs service model types
them, the errors AWS answers for bad ones, our page tokens, and filter patterns."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeGuard

from emulator.observe.linetimes import to_ms
from emulator.server.errors import ApiError


def invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterException", message)


def bad_token() -> ApiError:
    return invalid("The specified nextToken is invalid.")


class FilterPattern:
    """CloudWatch's filter pattern for unstructured events: terms (all must appear), quoted
    phrases, ``?term`` (at least one of those), ``-term`` (none of those), ``%regex%``;
    matching is case-sensitive. JSON (``{...}``) and space-delimited (``[...]``) patterns
    are not emulated: they are refused, never ignored."""

    _TOKEN = re.compile(r'([?-]?)(?:"([^"]*)"|%([^%]+)%|([^\s"%]+))')

    def __init__(self, text: str) -> None:
        self.required: list[Callable[[str], bool]] = []
        self.optional: list[Callable[[str], bool]] = []
        self.excluded: list[Callable[[str], bool]] = []
        text = text.strip()
        if text.startswith(("{", "[")):
            raise invalid(
                f"Filter pattern {text!r}: JSON and space-delimited filter patterns are not "
                'emulated; use terms, "quoted phrases", ?optional and -excluded terms or %regex%'
            )
        position = 0
        while position < len(text):
            if text[position].isspace():
                position += 1
                continue
            found = self._TOKEN.match(text, position)
            if found is None:
                raise invalid(f"Invalid filter pattern {text!r} at character {position + 1}")
            position = found.end()
            sign, phrase, regex, term = found.groups()
            test = self._regex(regex) if regex is not None else _contains(phrase or term or "")
            {"?": self.optional, "-": self.excluded}.get(sign, self.required).append(test)

    @staticmethod
    def _regex(expression: str) -> Callable[[str], bool]:
        try:
            compiled = re.compile(expression)
        except re.error as exc:
            raise invalid(f"Invalid regex in filter pattern %{expression}%: {exc}") from None
        return lambda message: compiled.search(message) is not None

    def matches(self, message: str) -> bool:
        return (
            all(test(message) for test in self.required)
            and (not self.optional or any(test(message) for test in self.optional))
            and not any(test(message) for test in self.excluded)
        )


def _contains(term: str) -> Callable[[str], bool]:
    return lambda message: term in message


def encode_token(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def decode_token(token: str, head: list[Any]) -> list[Any]:
    """The values after ``head`` in a token of ours (InvalidParameter for any other)."""
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, RecursionError):
        raise bad_token() from None
    if not isinstance(values, list) or values[: len(head)] != head:
        raise bad_token()
    return values[len(head) :]


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def ms_of(stamp: object) -> int | None:
    """An ISO 8601 time of a job record, in ms."""
    try:
        return to_ms(datetime.fromisoformat(str(stamp)).timestamp()) if stamp else None
    except ValueError:
        return None


class Params:
    """A request's members, checked as the logs service model types them."""

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def text(self, name: str, *, required: bool = False, empty: bool = False) -> str | None:
        value = self._body.get(name)
        if value is None:
            if required:
                raise invalid(_constraint(name, None, "Member must not be null"))
            return None
        if not isinstance(value, str):
            raise invalid(_constraint(name, value, "Member must be a string"))
        if not value and not empty:
            raise invalid(
                _constraint(name, value, "Member must have length greater than or equal to 1")
            )
        return value

    def name(self, name: str) -> str:
        """A required member."""
        value = self.text(name, required=True)
        assert value is not None  # text() raised otherwise
        return value

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        value = self.text(name)
        if value is not None and value not in choices:
            satisfy = f"Member must satisfy enum value set: [{', '.join(choices)}]"
            raise invalid(_constraint(name, value, satisfy))
        return value

    def number(self, name: str, low: int, high: int | None = None) -> int | None:
        value = self._body.get(name)
        if value is None:
            return None
        if not is_int(value):
            raise invalid(_constraint(name, value, "Member must be an integer"))
        if value < low:
            raise invalid(
                _constraint(name, value, f"Member must have value greater than or equal to {low}")
            )
        if high is not None and value > high:
            raise invalid(
                _constraint(name, value, f"Member must have value less than or equal to {high}")
            )
        return value

    def flag(self, name: str) -> bool | None:
        value = self._body.get(name)
        if value is not None and not isinstance(value, bool):
            raise invalid(_constraint(name, value, "Member must be a boolean"))
        return value

    def texts(self, name: str, most: int) -> list[str] | None:
        value = self._body.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise invalid(_constraint(name, value, "Member must be a list of non-empty strings"))
        if not 1 <= len(value) <= most:
            raise invalid(_constraint(name, value, f"Member must have length between 1 and {most}"))
        return value


def _constraint(name: str, value: object, rule: str) -> str:
    shown = "null" if value is None else json.dumps(value) if not isinstance(value, str) else value
    return (
        f"1 validation error detected: Value '{shown}' at '{name}' failed to satisfy "
        f"constraint: {rule}"
    )
