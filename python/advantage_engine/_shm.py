"""Shared-memory segments of the bridge: files ``/dev/shm/advantage-engine.<owner pid>.<n>`` mapped with
``mmap`` (the server maps the same files through its native addon).

The client owns the segments it creates: arrays made by ``Engine.empty`` / ``Engine.share`` (zero copy:
their memory is the segment), and a pool of scratch segments into which other large arguments are copied
once. The server owns the segments holding its large results: the client maps them and acknowledges them,
and the server removes their names. Whoever starts first sweeps the segments of owners that are dead
(a process killed with SIGKILL cleans nothing up).
"""
import ctypes
import itertools
import mmap
import os
import threading

SHM_DIR = "/dev/shm"
PREFIX = "advantage-engine."
_counter = itertools.count()
_counter_lock = threading.Lock()


def available():
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


def owner_pid(name):
    parts = name.split(".")
    if len(parts) != 3 or parts[0] + "." != PREFIX or not parts[1].isdigit():
        return None
    return int(parts[1])


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process stays a zombie until its parent reaps it: dead for our purpose
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2:stat.rindex(")") + 3] != "Z"
    except (OSError, ValueError):
        return True


def sweep(pid=None):
    """Removes the segments of ``pid``, or of every dead owner when ``pid`` is None; returns their names."""
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    removed = []
    for name in names:
        owner = owner_pid(name)
        if owner is None:
            continue
        if pid is not None and owner != pid:
            continue
        if pid is None and (owner == os.getpid() or pid_alive(owner)):
            continue
        try:
            os.unlink(os.path.join(SHM_DIR, name))
            removed.append(name)
        except OSError:
            pass
    return removed


def new_name():
    with _counter_lock:
        n = next(_counter)
    return "%s%d.%s" % (PREFIX, os.getpid(), _base36(n))


def _base36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


class Segment:
    """A segment this process created (``create``) or maps (``open``), mapped read-write whole."""

    __slots__ = ("name", "size", "map", "address", "__weakref__")

    def __init__(self, name, size, mapping):
        self.name = name
        self.size = size
        self.map = mapping
        # The mapping's address, to recognise arrays that live in it (zero-copy arguments).
        self.address = ctypes.addressof(ctypes.c_char.from_buffer(mapping))

    @classmethod
    def create(cls, size):
        name = new_name()
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        return cls(name, size, mapping)

    @classmethod
    def open(cls, name):
        if owner_pid(name) is None:
            raise ValueError("not a segment name: %r" % name)
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        return cls(name, size, mapping)

    def contains(self, address, nbytes):
        return self.address <= address and address + nbytes <= self.address + self.size

    def unlink(self):
        try:
            os.unlink(os.path.join(SHM_DIR, self.name))
        except FileNotFoundError:
            pass
