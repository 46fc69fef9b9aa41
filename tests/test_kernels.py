"""The conversion kernels' host side (``_kernels``) on CPU: the sizes one launch can take, and the
source specialisation of a variant. Compiling and launching need a GPU (tests/gpu/)."""

from __future__ import annotations

import pytest

from gpuimage import SpecError
from gpuimage._affine import identity_affine, scaled_affine
from gpuimage._geometry import Geometry
from gpuimage._plan import plan_variant

_kernels = pytest.importorskip("gpuimage._kernels", exc_type=ImportError)


def test_kernel_launches_refuse_sizes_beyond_their_int_parameters() -> None:
    with pytest.raises(SpecError, match="Convert in parts"):
        _kernels._check_limits(2**31, 16, 1)
    with pytest.raises(SpecError, match="Convert in parts"):
        _kernels._check_limits(16, 16, 65536)
    _kernels._check_limits(16, 16, 65535)  # the largest batch one launch takes


def test_a_variant_specialises_the_source_with_its_dtypes_and_path() -> None:
    hwc, chw = Geometry(4, 8, 3, 24, 3, 1), Geometry(4, 8, 3, 32, 4, 128)
    copy = _kernels.defines(plan_variant("uint8", "uint8", [(0, hwc)], (0, chw), identity_affine(3)))
    assert "#define SRC_T unsigned char\n" in copy
    assert "#define MODE 0\n" in copy
    assert "#define ARITHMETIC 0\n" in copy
    scaled = plan_variant("uint8", "float16", [(0, hwc)], (0, chw), scaled_affine(3, 0.5, 1.0, where="t"))
    lines = _kernels.defines(scaled)
    assert "#define DST_T unsigned short\n" in lines
    assert "#define STORE_ACC(v) float_to_half(v)\n" in lines
    assert "#define ARITHMETIC 1\n" in lines
