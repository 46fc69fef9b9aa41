"""Does torch's DLPack C exchange API (``torch.Tensor.__dlpack_c_exchange_api__``, torch >= 2.10)
beat the Python routes gpuimage takes to make a torch view of its memory, or to read a tensor?

Usage: ``python benchmarks/dlpack_exchange.py [--quick] [--json PATH]``. Unlike the other benchmarks
it also runs without a GPU (``torch.cuda.is_available()`` False): it then measures host tensors
(kDLCPU), which checks the routes anywhere; only the CUDA figures decide.

On a 1080x1920x3 uint8 image, timed as ``_timing.py`` says (N calls, one synchronize; each result
dropped at once, so freeing it and the deleter are timed too): view A, what ``as_torch()`` does
today (``torch.as_tensor`` of a new ``__cuda_array_interface__`` dict per call; on the host
``torch.from_numpy(np.asarray(...))``); view B, ``torch.from_dlpack`` of a capsule from gpuimage's
``__dlpack__``, made and consumed apart and together; view C, the exchange table's
``managed_tensor_to_py_object_no_sync`` called through ctypes on a ``DLManagedTensorVersioned``
built per call or copied from a per-geometry template; import, ``dltensor_from_py_object_no_sync``
against Python attribute reads; the current stream, ``current_work_stream`` against torch's getter.

Every route is first checked on small packed and pitched images (pointer, shape, strides, values,
owner kept alive and released once, no reference leaked): a failure exits 1 before any timing.
Without the exchange table, route C is skipped and the verdict says so (the Python route stays).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import faulthandler
import gc
import json
import platform
import sys
import weakref
from collections.abc import Callable, Iterator
from ctypes import PYFUNCTYPE, Structure, addressof, byref, c_int, c_int32, c_int64, c_void_p, py_object
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.dlpack
from _common import header, ratio_check, write_json
from _timing import Loop, Spread, wall_per_call, wall_per_call_each
from typing_extensions import CapsuleType

import gpuimage
from gpuimage import GpuImage, ImageSpec
from gpuimage._dlpack_abi import Deleter, DLManagedTensorVersioned, DLPackVersion, DLTensor, immortal
from gpuimage._dtypes import dtype_info
from gpuimage._interfaces import ArrayExport, CudaArrayExport, cuda_array_interface, host_array_interface

HEIGHT, WIDTH, CHANNELS = 1080, 1920, 3
QUICK, FULL = Loop(calls=2_000, repeats=5, warmup=200, gpu_calls=0), Loop(10_000, 15, 1_000, 0)
CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda", 0) if CUDA else torch.device("cpu")
# gpuimage refuses a stream for a host image; on the GPU, -1 asks for no ordering (as C has none).
EXPORT_STREAM = -1 if CUDA else None
KDL_CPU, KDL_CUDA = 1, 2
API_NAME = b"dlpack_exchange_api"
VERDICT = "C exchange API beats the Python route"
# torch's private getter of the current stream's raw handle, which gpuimage's torch spoke uses.
RAW_STREAM: Callable[[int], int] | None = getattr(torch._C, "_cuda_getCurrentRawStream", None)
PY_READS = "import: Python reads (data_ptr, shape, stride, dtype, device)"
ROUTE_B = "B: __dlpack__() + from_dlpack"
ROUTE_A = "A: torch.as_tensor(CAI)" if CUDA else "A: torch.from_numpy(array interface)"


# --- DLPack 1.3 dlpack.h: the exchange table (its function types as torch 2.13 ships them) ---------
class ExchangeAPIHeader(Structure):
    _fields_ = (("version", DLPackVersion), ("prev_api", c_void_p))


# PYFUNCTYPE: called with the GIL held, and a Python error the function set is raised on return.
ToPyObject = PYFUNCTYPE(c_int, ctypes.POINTER(DLManagedTensorVersioned), ctypes.POINTER(py_object))
DLTensorFromPyObject = PYFUNCTYPE(c_int, py_object, ctypes.POINTER(DLTensor))
CurrentWorkStream = PYFUNCTYPE(c_int, c_int32, c_int32, ctypes.POINTER(c_void_p))


class ExchangeAPI(Structure):
    _fields_ = (
        ("header", ExchangeAPIHeader),
        ("managed_tensor_allocator", c_void_p),  # these two are not called here
        ("managed_tensor_from_py_object_no_sync", c_void_p),
        ("managed_tensor_to_py_object_no_sync", ToPyObject),
        ("dltensor_from_py_object_no_sync", DLTensorFromPyObject),  # may be NULL
        ("current_work_stream", CurrentWorkStream),
    )


_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.restype, _capsule_name.argtypes = ctypes.c_char_p, [py_object]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype, _capsule_pointer.argtypes = c_void_p, [py_object, ctypes.c_char_p]
_decref = ctypes.pythonapi.Py_DecRef
_decref.restype, _decref.argtypes = None, [py_object]


class Exchange:
    """torch's functions, read off the table once: each read of a ctypes field makes a new object."""

    __slots__ = ("read", "stream", "to_py", "version")

    def __init__(self, table: ExchangeAPI) -> None:
        self.version = f"{table.header.version.major}.{table.header.version.minor}"
        self.to_py = table.managed_tensor_to_py_object_no_sync
        self.read = table.dltensor_from_py_object_no_sync
        self.stream = table.current_work_stream


def find_exchange_api() -> tuple[Exchange | None, str]:
    """torch's table, or None and why not (the table is looked up on the type, as dlpack.h says)."""
    capsule: object = getattr(torch.Tensor, "__dlpack_c_exchange_api__", None)
    if capsule is None:
        return None, f"torch {torch.__version__} has no __dlpack_c_exchange_api__ (torch >= 2.10 has)"
    if type(capsule) is not CapsuleType or _capsule_name(capsule) != API_NAME:
        return None, f"__dlpack_c_exchange_api__ is not a {API_NAME.decode()!r} capsule: {capsule!r}"
    table = ExchangeAPI.from_address(_capsule_pointer(capsule, API_NAME))
    major, minor = table.header.version.major, table.header.version.minor
    if major != 1:  # a consumer may only read a table of its own major version (or walk prev_api)
        return None, f"the exchange table is DLPack {major}.{minor}; this script reads 1.x"
    if not table.managed_tensor_to_py_object_no_sync or not table.dltensor_from_py_object_no_sync:
        return None, "the exchange table has no managed_tensor_to_py_object or dltensor_from_py_object"
    prev = "set" if table.header.prev_api else "NULL"
    return Exchange(table), f"DLPack {major}.{minor} exchange table (prev_api {prev})"


# --- tensors we hand to torch: the struct, its arrays and the owner live until the deleter runs ----
_live: dict[int, tuple[object, ...]] = immortal({})  # torch may free a tensor at interpreter exit
_stray: list[int] = []  # deleter calls for an address not live: a second call, or a foreign one


def _deleted(address: int | None) -> None:
    if _live.pop(address or 0, None) is None:
        _stray.append(address or 0)


DELETER = immortal(Deleter(_deleted))


def managed_new(ptr: int, spec: ImageSpec, owner: object) -> DLManagedTensorVersioned:
    """A versioned tensor built field by field, as gpuimage's capsule exporter builds one."""
    strides = (stride // spec.itemsize for stride in spec.strides)  # DLPack counts ELEMENTS
    shape_array, strides_array = (c_int64 * 3)(*spec.shape), (c_int64 * 3)(*strides)
    managed = DLManagedTensorVersioned()
    managed.version.major, managed.version.minor = 1, 1
    tensor = managed.dl_tensor
    tensor.data = ptr
    tensor.device.device_type, tensor.device.device_id = spec.device.dlpack
    tensor.ndim = 3
    tensor.dtype.code, tensor.dtype.bits = dtype_info(spec.dtype).dlpack_code, spec.itemsize * 8
    tensor.dtype.lanes = 1
    tensor.shape = ctypes.cast(shape_array, ctypes.POINTER(c_int64))
    tensor.strides = ctypes.cast(strides_array, ctypes.POINTER(c_int64))
    managed.deleter = DELETER
    _live[addressof(managed)] = (managed, shape_array, strides_array, owner)
    return managed


class Template:
    """A filled tensor of one geometry with no pointer: a view copies its bytes and sets ``data``.

    Its shape and strides arrays live as long as the template (torch copies them in from_blob).
    """

    def __init__(self, spec: ImageSpec) -> None:
        managed = managed_new(0, spec, None)
        # The template itself is never handed over; it keeps the arrays its bytes point to.
        self.keep = _live.pop(addressof(managed))
        self.raw = bytes(managed)

    def make(self, ptr: int, owner: object) -> DLManagedTensorVersioned:
        managed = DLManagedTensorVersioned.from_buffer_copy(self.raw)
        managed.dl_tensor.data = ptr
        _live[addressof(managed)] = (managed, owner)
        return managed


def exchange_view(api: Exchange, managed: DLManagedTensorVersioned) -> torch.Tensor:
    """The tensor torch makes of ``managed`` (it calls the deleter when the tensor's storage goes)."""
    out = py_object()
    try:
        api.to_py(byref(managed), byref(out))
    except BaseException:
        # torch 2.13 refuses (a bad device or dtype) before it takes ownership: no deleter call follows.
        _live.pop(addressof(managed), None)
        raise
    tensor: torch.Tensor = out.value
    _decref(tensor)  # torch handed us a new reference, and .value took one more
    return tensor


def exchange_read(api: Exchange, tensor: torch.Tensor) -> tuple[Any, ...]:
    """(data, shape, strides in elements, (code, bits, lanes), (device type, id)) via a borrowed DLTensor."""
    dl = DLTensor()
    api.read(tensor, byref(dl))
    ndim = dl.ndim
    return (
        (dl.data or 0) + dl.byte_offset,
        tuple(dl.shape[:ndim]),  # slicing a ctypes pointer reads ndim items at once
        tuple(dl.strides[:ndim]),
        (dl.dtype.code, dl.dtype.bits, dl.dtype.lanes),
        (dl.device.device_type, dl.device.device_id),
    )


def python_read(tensor: torch.Tensor) -> tuple[Any, ...]:
    return tensor.data_ptr(), tensor.shape, tensor.stride(), tensor.dtype, tensor.device


def exchange_stream(api: Exchange, device_type: int) -> int:
    out = c_void_p()
    api.stream(device_type, DEVICE.index or 0, byref(out))
    return out.value or 0


# --- the Python routes ------------------------------------------------------------------------------
def route_a(spec: ImageSpec) -> Callable[[int, object], torch.Tensor]:
    """gpuimage's ``_torch.view``: the header is made once per geometry, the dict once per view."""
    if CUDA:
        interface = cuda_array_interface(0, spec, stream=None, readonly=False)

        def cuda_view(ptr: int, owner: object) -> torch.Tensor:
            tensor = torch.as_tensor(
                CudaArrayExport({**interface, "data": (ptr, False)}, owner), device=DEVICE
            )
            if tensor.data_ptr() != ptr:  # gpuimage's check: torch copies rather than fail
                raise RuntimeError("torch.as_tensor copied")
            return tensor

        return cuda_view
    interface = host_array_interface(0, spec, readonly=False)
    from_numpy: Callable[[Any], torch.Tensor] = torch.from_numpy
    return lambda ptr, owner: from_numpy(np.asarray(ArrayExport({**interface, "data": (ptr, False)}, owner)))


def capsule_of(image: GpuImage) -> object:
    return image.__dlpack__(max_version=(1, 0), stream=EXPORT_STREAM)


def route_b(ptr: int, spec: ImageSpec, owner: object) -> torch.Tensor:
    return torch.utils.dlpack.from_dlpack(capsule_of(GpuImage.from_pointer(ptr, spec, owner=owner)))


# --- checks before timing ---------------------------------------------------------------------------
class Owner:
    """Stands for the memory's owner: a weakref tells whether it is still kept alive."""

    def __init__(self, memory: torch.Tensor) -> None:
        self.memory = memory


def view_routes(
    api: Exchange | None, ptr: int, spec: ImageSpec
) -> dict[str, Callable[[object], torch.Tensor]]:
    """Each view route, as a function of the owner to keep alive."""
    view_a, template = route_a(spec), Template(spec)
    routes: dict[str, Callable[[object], torch.Tensor]] = {
        "A": lambda owner: view_a(ptr, owner),
        "B": lambda owner: route_b(ptr, spec, owner),
    }
    if api is not None:
        routes["C new"] = lambda owner: exchange_view(api, managed_new(ptr, spec, owner))
        routes["C template"] = lambda owner: exchange_view(api, template.make(ptr, owner))
    return routes


def check_view(make: Callable[[object], torch.Tensor], source: torch.Tensor, ptr: int) -> list[str]:
    """What is wrong with ``make(owner)``'s view of ``source`` (at ``ptr``), and with its lifetime."""
    owner = Owner(source)
    alive, live_before = weakref.ref(owner), len(_live)
    view = make(owner)
    del owner
    gc.collect()
    plain = source.view(source.shape)  # a tensor torch made itself: its count is the baseline
    wrong = [
        (view.data_ptr() != ptr, f"data_ptr {view.data_ptr():#x} != {ptr:#x}"),
        (view.shape != source.shape, f"shape {tuple(view.shape)} != {tuple(source.shape)}"),
        (view.stride() != source.stride(), f"strides {view.stride()} != {source.stride()}"),
        (view.device != source.device or not torch.equal(view, source), "values differ"),
        (sys.getrefcount(view) != sys.getrefcount(plain), "a reference leaked"),
        (alive() is None, "the owner died while the view lives"),
    ]
    del view, plain
    gc.collect()
    wrong.append((alive() is not None, "the owner outlives the view (a leak)"))
    wrong.append((len(_live) != live_before or bool(_stray), "the deleter did not run exactly once"))
    return [text for bad, text in wrong if bad]


def verify(api: Exchange | None) -> list[str]:
    """Every route's result on small packed and pitched images; the failures (empty: all good)."""
    failures: list[str] = []
    values = torch.arange(6 * 8 * 3, dtype=torch.uint8).reshape(6, 8, 3).to(DEVICE)
    device = (KDL_CUDA, 0) if CUDA else (KDL_CPU, 0)
    for name, source in (("packed 4x5x3", values[:4, :5].contiguous()), ("pitched crop", values[1:5, 2:7])):
        image = GpuImage.from_torch(source, layout="HWC")
        routes = view_routes(api, image.ptr, image.spec)
        # Fill freed memory with 7s: a struct pointing at arrays nobody keeps would read them.
        scribbles = [(c_int64 * 3)(7, 7, 7) for _ in range(1_000)]
        for route, make in routes.items():
            failures += [f"{name}, route {route}: {text}" for text in check_view(make, source, image.ptr)]
        wanted = (image.ptr, tuple(source.shape), source.stride(), (1, 8, 1), device)
        read = exchange_read(api, source) if api is not None else wanted
        if read != wanted:
            failures.append(f"{name}: dltensor_from_py_object read {read}, expected {wanted}")
        del scribbles
    if api is None:
        return failures
    # torch refuses a tensor it cannot express and does not call the deleter: the caller releases.
    owner = Owner(values)
    alive = weakref.ref(owner)
    managed = managed_new(image.ptr, image.spec, owner)
    managed.dl_tensor.dtype.code = 77
    del owner
    with contextlib.suppress(RuntimeError):
        exchange_view(api, managed)
        failures.append("error path: torch accepted DLPack dtype code 77")
    del managed
    gc.collect()
    if alive() is not None or _stray:
        failures.append("error path: the owner was not released exactly once")
    for stream in [torch.cuda.current_stream(), torch.cuda.Stream()] if CUDA else []:
        with torch.cuda.stream(stream):  # the raw handle, as gpuimage's torch spoke reads it
            got, want = exchange_stream(api, KDL_CUDA), RAW_STREAM(0) if RAW_STREAM else stream.cuda_stream
        if got != want:
            failures.append(f"current_work_stream {got:#x} != torch's current stream {want:#x}")
    if not CUDA and exchange_stream(api, KDL_CPU) != 0:
        failures.append("current_work_stream(kDLCPU) is not NULL")
    return failures


# --- timing -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def host_clock() -> Iterator[None]:
    """On a machine without a GPU, ``_timing``'s loops with a no-op in place of the synchronize
    (host work is done when the call returns); on the GPU, nothing changes."""
    saved = torch.cuda.synchronize
    if not CUDA:
        setattr(torch.cuda, "synchronize", lambda device=None: None)  # noqa: B010 - mypy: no assignment
    try:
        yield
    finally:
        setattr(torch.cuda, "synchronize", saved)  # noqa: B010


def run_ops(api: Exchange | None, loop: Loop) -> dict[str, Spread]:
    memory = torch.randint(0, 256, (HEIGHT, WIDTH, CHANNELS), dtype=torch.uint8, device=DEVICE)
    image = GpuImage.from_torch(memory, layout="HWC")
    ptr, spec, owner = image.ptr, image.spec, Owner(memory)
    view_a, template, exporter = route_a(spec), Template(spec), GpuImage.from_pointer(ptr, spec, owner=owner)
    from_dlpack, kind = torch.utils.dlpack.from_dlpack, KDL_CUDA if CUDA else KDL_CPU
    timings: dict[str, Spread] = {}

    def timed(name: str, op: Callable[[], object]) -> None:
        timings[name] = wall_per_call(op, loop)

    timed("(loop overhead: a no-op call)", lambda: None)
    timed(ROUTE_A, lambda: view_a(ptr, owner))
    timed("B: __dlpack__() capsule only (dropped)", lambda: capsule_of(exporter))
    timings["B: from_dlpack(capsule) only"] = wall_per_call_each(
        from_dlpack, lambda: capsule_of(exporter), loop
    )
    timed(ROUTE_B, lambda: from_dlpack(capsule_of(exporter)))
    timed(
        "gpuimage today: from_pointer().as_torch()",
        lambda: GpuImage.from_pointer(ptr, spec, owner=owner).as_torch(),
    )
    if api is not None:
        timings["C part: to_py_object only (structs made before the clock)"] = wall_per_call_each(
            lambda managed: exchange_view(api, managed), lambda: template.make(ptr, owner), loop
        )
        timed("C: view, struct built per call", lambda: exchange_view(api, managed_new(ptr, spec, owner)))
        timed("C: view, struct copied from a template", lambda: exchange_view(api, template.make(ptr, owner)))
        timed(
            "C part: the template copy only (dropped)",
            lambda: _live.pop(addressof(template.make(ptr, owner))),
        )
    timed(PY_READS, lambda: python_read(memory))
    timed('import: GpuImage.from_torch(t, layout="HWC")', lambda: GpuImage.from_torch(memory, layout="HWC"))
    if api is not None:
        timed("import: C dltensor_from_py_object + reads", lambda: exchange_read(api, memory))
        timed("stream: C current_work_stream", lambda: exchange_stream(api, kind))
    if CUDA and RAW_STREAM is not None:
        raw = RAW_STREAM
        timed("stream: torch._C._cuda_getCurrentRawStream", lambda: raw(0))
    return timings


def best(timings: dict[str, Spread], prefix: str) -> tuple[str, float] | None:
    found = [(spread.median_us, name) for name, spread in timings.items() if name.startswith(prefix)]
    return (min(found)[1], min(found)[0]) if found else None


def report(timings: dict[str, Spread], api: Exchange | None, why: str) -> tuple[list[str], list[Any]]:
    """The table and verdict lines, and the checks for benchmarks/run.py (shown, not judged)."""
    base = timings[ROUTE_A].median_us
    lines = [f"{'route':<64}{'us/call':>9}{'p10':>9}{'p90':>9}{'vs A':>8}", "-" * 99]
    for name, spread in timings.items():
        lines.append(
            f"{name:<64}{spread.median_us:>9.3f}{spread.p10_us:>9.3f}{spread.p90_us:>9.3f}"
            f"{spread.median_us / base:>7.2f}x"
        )
    lines.append("")
    view_c, read_c = best(timings, "C: view") if api else None, best(timings, "import: C")
    read_py = timings[PY_READS].median_us
    checks: list[Any] = []
    if view_c is None or read_c is None:
        lines.append(f"route C skipped: {why}.")
        lines.append(f"{VERDICT}: no (not available here; gpuimage keeps the Python route)")
        return lines, checks
    (view_name, view_us), (python_name, python_us) = (
        view_c,
        min(((name, timings[name].median_us) for name in (ROUTE_A, ROUTE_B)), key=lambda pair: pair[1]),
    )
    lines.append(
        f"{VERDICT}: {'yes' if view_us < python_us else 'no'} ({view_us:.1f} us vs {python_us:.1f} us)"
    )
    lines.append(f"  view: best C ({view_name}) vs the faster Python route ({python_name})")
    faster = "yes" if read_c[1] < read_py else "no"
    lines.append(f"  import: C read {faster} ({read_c[1]:.2f} us vs Python reads {read_py:.2f} us)")
    checks.append(ratio_check(f"view: {view_name}", view_us, python_us, python_name, None))
    checks.append(ratio_check("import: C dltensor_from_py_object", read_c[1], read_py, "Python reads", None))
    return lines, checks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """``_common.parse_args``'s options, without its exit on a machine with no GPU."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke test only")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loop = QUICK if args.quick else FULL
    api, why = find_exchange_api()
    info = (
        header()
        if CUDA
        else {
            "device": f"cpu (torch.cuda.is_available() is False: host tensors, kDLCPU); {platform.machine()}",
            "python": platform.python_version(),
            "gpuimage": gpuimage.__version__,
            "torch": torch.__version__,
        }
    )
    info |= {"numpy": np.__version__, "exchange api": why}
    print(json.dumps(info))
    print(f"image {HEIGHT}x{WIDTH}x{CHANNELS} uint8 HWC, {DEVICE}; {loop}\n")
    failures = verify(api)
    if failures:
        print("VERIFICATION FAILED (nothing timed):\n  " + "\n  ".join(failures))
        return 1
    print(
        f"verified: routes A, B{', C' if api else ''} on packed and pitched images (pointer, shape, "
        "strides, values, owner kept and released once)\n"
    )
    with host_clock():
        timings = run_ops(api, loop)
    lines, checks = report(timings, api, why)
    print("\n".join(lines))
    results = {"header": info, "config": asdict(loop), "ops": {k: asdict(v) for k, v in timings.items()}}
    write_json(args.json, results | {"checks": checks})
    return 0


if __name__ == "__main__":
    # A hang ends the run with every thread's traceback (armed here, not in main(), which a test runs).
    faulthandler.dump_traceback_later(300 if "--quick" in sys.argv else 1800, exit=True)
    sys.exit(main())
