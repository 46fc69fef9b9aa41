"""Layouts (``_layout``): every spelling ``layout=`` accepts becomes a ``Layout``, the static markers
name their layout, and everything else is refused with a ``LayoutError`` that says what was got."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import CHW, HWC, AnyLayout, GpuImageError, Layout, LayoutError
from gpuimage._layout import parse_layout

WHERE = "test()"


class _Text(str):
    """A str subclass: not the fast path's exact type, still a string."""

    __slots__ = ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Layout.HWC, Layout.HWC),
        (Layout.CHW, Layout.CHW),
        ("HWC", Layout.HWC),
        ("CHW", Layout.CHW),
        ("hwc", Layout.HWC),
        ("cHw", Layout.CHW),
        (_Text("chw"), Layout.CHW),
        (HWC, Layout.HWC),
        (CHW, Layout.CHW),
    ],
    ids=repr,
)
def test_every_spelling_parses_to_its_layout(value: object, expected: Layout) -> None:
    parsed = parse_layout(value, where=WHERE)
    assert parsed is expected, "a Layout member, not an equal string"


@given(st.sampled_from(["HWC", "CHW"]), st.lists(st.booleans(), min_size=3, max_size=3))
def test_any_mix_of_cases_parses(name: str, upper: list[bool]) -> None:
    text = "".join(char if up else char.lower() for char, up in zip(name, upper, strict=True))
    assert parse_layout(text, where=WHERE) is Layout(name)


@given(st.text(max_size=6))
def test_text_parses_exactly_when_its_upper_case_names_a_layout(text: str) -> None:
    if text.upper() in ("HWC", "CHW"):
        assert parse_layout(text, where=WHERE) is Layout(text.upper())
    else:
        with pytest.raises(LayoutError, match=r"^test\(\): expected layout 'HWC' or 'CHW'"):
            parse_layout(text, where=WHERE)


class _Unrelated:
    layout = Layout.HWC  # looks like a marker, is not one


@pytest.mark.parametrize(
    "value",
    [
        "HCW",
        "",
        " HWC",
        "NCHW",
        b"HWC",
        None,
        3,
        Layout,  # the enum class, not a member
        AnyLayout,  # the marker of "any layout": no layout to parse
        _Unrelated,
        _Unrelated(),
        HWC(),  # an instance, not the marker class
        ("HWC",),
    ],
    ids=[
        "HCW",
        "empty",
        "space",
        "NCHW",
        "bytes",
        "None",
        "int",
        "enum class",
        "AnyLayout",
        "lookalike class",
        "lookalike instance",
        "marker instance",
        "tuple",
    ],
)
def test_anything_else_is_refused_naming_the_value(value: object) -> None:
    with pytest.raises(LayoutError) as caught:
        parse_layout(value, where=WHERE)
    message = str(caught.value)
    assert message == f"test(): expected layout 'HWC' or 'CHW' (or gpuimage.Layout), got layout={value!r}."
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, GpuImageError)


def test_the_markers_name_their_layout() -> None:
    assert HWC.layout is Layout.HWC
    assert CHW.layout is Layout.CHW
    assert AnyLayout.layout is None
    assert issubclass(HWC, AnyLayout)
    assert issubclass(CHW, AnyLayout)
    assert not issubclass(HWC, CHW)
    assert not issubclass(CHW, HWC)


def test_layout_members_are_their_names() -> None:
    assert [member.value for member in Layout] == ["HWC", "CHW"]
    assert Layout.HWC == "HWC"
    assert Layout.CHW == "CHW"
    assert f"{Layout.CHW}" == "CHW", "a StrEnum formats as its value"
