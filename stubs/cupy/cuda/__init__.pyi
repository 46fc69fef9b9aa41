# Partial stubs for cupy.cuda: the names gpuimage uses, re-exported from their modules.
from cupy.cuda import compiler as compiler
from cupy.cuda import device as device
from cupy.cuda import function as function
from cupy.cuda import memory as memory
from cupy.cuda import runtime as runtime
from cupy.cuda import stream as stream
from cupy.cuda.device import Device as Device
from cupy.cuda.memory import BaseMemory as BaseMemory
from cupy.cuda.memory import Memory as Memory
from cupy.cuda.memory import MemoryPointer as MemoryPointer
from cupy.cuda.memory import MemoryPool as MemoryPool
from cupy.cuda.memory import UnownedMemory as UnownedMemory
from cupy.cuda.memory import alloc as alloc
from cupy.cuda.memory import get_allocator as get_allocator
from cupy.cuda.memory import set_allocator as set_allocator
from cupy.cuda.stream import Event as Event
from cupy.cuda.stream import ExternalStream as ExternalStream
from cupy.cuda.stream import Stream as Stream
from cupy.cuda.stream import get_current_stream as get_current_stream
from cupy.cuda.stream import get_elapsed_time as get_elapsed_time

def is_available() -> bool: ...
def get_local_runtime_version() -> int: ...
