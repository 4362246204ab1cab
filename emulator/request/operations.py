"""The input of any SageMaker operation checked against botocore's model, as the service checks
it (the server's operations other than CreateTrainingJob, whose request gets the full
validation of ``emulator.request.validation``)."""

from __future__ import annotations

import functools

from emulator.request.nesting import depth_problems
from emulator.request.schema import Node, compile_shape
from emulator.request.walk import check

__all__ = ["operation_problems"]


def operation_problems(operation: str, value: object) -> list[str]:
    """Every breach of ``operation``'s input shape by ``value``, ``Path.To.Field: message``."""
    too_deep = depth_problems(value)
    if too_deep:
        return too_deep
    problems: list[str] = []
    check(_input_node(operation), value, "", problems)
    return problems


@functools.cache
def _input_node(operation: str) -> Node:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model(operation).input_shape
    assert shape is not None, f"botocore's model has no input for {operation}"
    return compile_shape(shape, {})
