class CompileException(Exception):
    def __init__(
        self, msg: str, source: str, name: str, options: tuple[str, ...], backend: str = ...
    ) -> None: ...
    def get_message(self) -> str: ...
    def dump(self, f: object) -> None: ...

# Returns the compiled object (cubin or PTX) and the name-expression mapping; older CuPy returned the
# object alone. Unlike RawModule, it adds no options of its own (RawModule appends -ftz=true).
def compile_using_nvrtc(
    source: str,
    options: tuple[str, ...] = (),
    arch: str | None = None,
    filename: str = "kern.cu",
    name_expressions: object = None,
    log_stream: object = None,
    cache_in_memory: bool = False,
    jitify: bool = False,
) -> tuple[bytes | str, object] | bytes | str: ...
