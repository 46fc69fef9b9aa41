from cupy.cuda.stream import Stream

class Function:
    ptr: int  # the CUfunction handle
    def __call__(
        self,
        grid: tuple[int, ...],
        block: tuple[int, ...],
        args: tuple[object, ...],
        shared_mem: int = 0,
        stream: Stream | None = None,
    ) -> None: ...

class Module:
    def __init__(self) -> None: ...
    def load(self, cubin: bytes) -> None: ...
    def get_function(self, name: str) -> Function: ...
