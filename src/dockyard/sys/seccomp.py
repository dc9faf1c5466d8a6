"""Seccomp filters through libseccomp (``libseccomp.so.2``), the way runc builds them.

``build_filter`` turns the OCI ``linux.seccomp`` object into a libseccomp
filter context; ``Filter.load`` installs it in the calling thread (with
``SCMP_FLTATR_CTL_NNP`` off, so loading does not set no_new_privs as a side
effect: the caller then needs either no_new_privs already set or
CAP_SYS_ADMIN). ``compile_filter`` instead exports the BPF program, and
``install`` loads such a program with one seccomp(2) call: a runtime compiles
early (where errors can still be reported, ~10 ms for Docker's profile on
x86_64 with its x86/x32 sub-architectures) and installs as the last step
before ``execve``, so that almost nothing runs under the filter before the
user's program.

Facts about libseccomp relied on here:
* Every function returns a negative errno on failure (never sets ``errno``).
* ``seccomp_init`` adds the native architecture; adding it again gives -EEXIST.
* ``seccomp_syscall_resolve_name`` returns -1 (``__NR_SCMP_ERROR``) for a
  name unknown to this libseccomp; names that exist only on other
  architectures resolve to negative pseudo numbers that rule-add translates
  per architecture. Unknown names are skipped, as runc does.
* A rule whose action equals the default action is refused (-EACCES); runc
  skips such rules and so do we.
* Several conditions on the same argument in one rule are not supported by
  libseccomp's AND semantics; runc then adds one rule per condition (OR).
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
from collections import namedtuple
from collections.abc import Sequence

from dockyard import errdefs
from dockyard.sys.libc import check, libc

LIBRARY = "libseccomp.so.2"

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_KILL = SCMP_ACT_KILL_THREAD
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_ACT_TRACE = 0x7FF00000


def SCMP_ACT_ERRNO(err: int) -> int:  # libseccomp's macro name
    return _SCMP_ACT_ERRNO | (err & 0xFFFF)


def SCMP_ACT_TRACE(msg: int) -> int:  # libseccomp's macro name
    return _SCMP_ACT_TRACE | (msg & 0xFFFF)


SCMP_CMP_NE = 1
SCMP_CMP_LT = 2
SCMP_CMP_LE = 3
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_GT = 6
SCMP_CMP_MASKED_EQ = 7

OPERATORS = {
    "SCMP_CMP_NE": SCMP_CMP_NE,
    "SCMP_CMP_LT": SCMP_CMP_LT,
    "SCMP_CMP_LE": SCMP_CMP_LE,
    "SCMP_CMP_EQ": SCMP_CMP_EQ,
    "SCMP_CMP_GE": SCMP_CMP_GE,
    "SCMP_CMP_GT": SCMP_CMP_GT,
    "SCMP_CMP_MASKED_EQ": SCMP_CMP_MASKED_EQ,
}

# enum scmp_filter_attr
SCMP_FLTATR_ACT_DEFAULT = 1
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_FLTATR_CTL_LOG = 6
SCMP_FLTATR_CTL_SSB = 7

# OCI flag → the filter attribute that implements it (TSYNC is irrelevant: the
# init is single-threaded; WAIT_KILLABLE_RECV needs a listener we do not have).
_FLAG_ATTRS = {
    "SECCOMP_FILTER_FLAG_LOG": SCMP_FLTATR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": SCMP_FLTATR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_TSYNC": SCMP_FLTATR_CTL_TSYNC,
}

# seccomp(2) filter flags, for ``install``.
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4
_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": SECCOMP_FILTER_FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": SECCOMP_FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": SECCOMP_FILTER_FLAG_SPEC_ALLOW,
}
_BPF_INSN_SIZE = 8  # struct sock_filter
_BPF_MAXINSNS = 4096

_NR_SCMP_ERROR = -1
_MAX_ARGS = 6


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


@functools.cache
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError as exc:
        raise errdefs.System(f"seccomp is not available: cannot load {LIBRARY}: {exc}")
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.restype = None
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_load.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_export_bpf.restype = ctypes.c_int
    lib.seccomp_version.argtypes = []
    lib.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_attr_set.restype = ctypes.c_int
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_add.restype = ctypes.c_int
    lib.seccomp_arch_native.argtypes = []
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    return lib


def available() -> bool:
    """Whether libseccomp can be loaded on this host."""
    try:
        _lib()
    except errdefs.System:
        return False
    return True


def library_version() -> str:
    """libseccomp's version ("2.5.4"): the BPF it generates depends on it."""
    return ".".join(str(part) for part in _lib().seccomp_version().contents)


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise errdefs.System(f"seccomp: {what}: {os.strerror(-rc)}")
    return rc


# Records as namedtuples, not dataclasses: every shim imports this module.
# One argument comparison; for MASKED_EQ ``value`` is the mask and
# ``value_two`` the expected result (OCI and libseccomp agree on that).
Condition = namedtuple("Condition", "index op value value_two", defaults=(0,))


def arch_token(name: str) -> int:
    """libseccomp's token for an OCI architecture name ("SCMP_ARCH_X86_64")."""
    short = name.removeprefix("SCMP_ARCH_").lower()
    token = _lib().seccomp_arch_resolve_name(short.encode())
    if token == 0:
        raise errdefs.InvalidArgument(f"seccomp: unknown architecture {name!r}")
    return token


def native_arch() -> int:
    return _lib().seccomp_arch_native()


def resolve_syscall(name: str) -> int | None:
    """The syscall number (or libseccomp pseudo number) for ``name``; None if unknown."""
    number = _lib().seccomp_syscall_resolve_name(name.encode())
    return None if number == _NR_SCMP_ERROR else number


def action(name: str, errno_ret: int | None = None) -> int:
    """The libseccomp action for an OCI action name."""
    simple = {
        "SCMP_ACT_KILL": SCMP_ACT_KILL,
        "SCMP_ACT_KILL_THREAD": SCMP_ACT_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": SCMP_ACT_KILL_PROCESS,
        "SCMP_ACT_TRAP": SCMP_ACT_TRAP,
        "SCMP_ACT_ALLOW": SCMP_ACT_ALLOW,
        "SCMP_ACT_LOG": SCMP_ACT_LOG,
    }
    if name in simple:
        return simple[name]
    if name == "SCMP_ACT_ERRNO":
        # The OCI default for a missing errnoRet is EPERM.
        return SCMP_ACT_ERRNO(1 if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return SCMP_ACT_TRACE(1 if errno_ret is None else errno_ret)
    raise errdefs.InvalidArgument(f"seccomp: unsupported action {name!r}")


class Filter:
    """A libseccomp filter context; release it (or use ``with``) when done."""

    def __init__(self, default_action: int) -> None:
        ctx = _lib().seccomp_init(default_action)
        if not ctx:
            raise errdefs.InvalidArgument(f"seccomp: invalid default action {default_action:#x}")
        self._ctx: int | None = ctx
        self.default_action = default_action
        # Loading must not set no_new_privs behind the caller's back (runc does the same).
        self.set_attr(SCMP_FLTATR_CTL_NNP, 0)

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def ctx(self) -> int:
        if self._ctx is None:
            raise errdefs.System("seccomp: filter already released")
        return self._ctx

    def set_attr(self, attr: int, value: int) -> None:
        _check(_lib().seccomp_attr_set(self.ctx, attr, value), f"attr_set({attr})")

    def add_arch(self, token: int) -> None:
        rc = _lib().seccomp_arch_add(self.ctx, token)
        if rc != -17:  # -EEXIST: already there (the native one always is)
            _check(rc, f"arch_add({token:#x})")

    def add_rule(self, act: int, syscall: int, conditions: Sequence[Condition] = ()) -> None:
        array = (_ArgCmp * max(len(conditions), 1))()
        for i, c in enumerate(conditions):
            array[i] = _ArgCmp(c.index, c.op, c.value, c.value_two)
        rc = _lib().seccomp_rule_add_array(self.ctx, act, syscall, len(conditions), array)
        _check(rc, f"rule_add(syscall {syscall})")

    def load(self) -> None:
        """Install the filter on the calling thread; needs no_new_privs or CAP_SYS_ADMIN."""
        _check(_lib().seccomp_load(self.ctx), "load")

    def export_bpf(self) -> bytes:
        """The BPF program libseccomp generates for this filter."""
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _check(_lib().seccomp_export_bpf(self.ctx, fd), "export_bpf")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._ctx is not None:
            _lib().seccomp_release(self._ctx)
            self._ctx = None


def build_filter(seccomp: dict) -> Filter:
    """A filter for the OCI ``linux.seccomp`` object (not loaded yet)."""
    default = action(seccomp.get("defaultAction") or "", seccomp.get("defaultErrnoRet"))
    filt = Filter(default)
    try:
        for arch in seccomp.get("architectures") or []:
            filt.add_arch(arch_token(arch))
        for flag in seccomp.get("flags") or []:
            if flag not in _FLAG_ATTRS:
                raise errdefs.InvalidArgument(f"seccomp: unsupported flag {flag!r}")
            filt.set_attr(_FLAG_ATTRS[flag], 1)
        for rule in seccomp.get("syscalls") or []:
            _add_syscall_rule(filt, rule)
    except BaseException:
        filt.release()
        raise
    return filt


# A compiled filter: BPF instructions and the seccomp(2) flags to load them with.
Program = namedtuple("Program", "bpf flags", defaults=(0,))


def compile_filter(seccomp: dict) -> Program:
    """The BPF program for the OCI ``linux.seccomp`` object, ready for ``install``."""
    flags = filter_flags(seccomp)
    _seccomp_nr()  # resolved now so that install does no lookups in a forked init
    with build_filter(seccomp) as filt:
        return Program(filt.export_bpf(), flags)


def program(bpf: bytes, flags: int = 0) -> Program:
    """A Program from BPF exported earlier (a cache), ready for ``install``."""
    if not bpf or len(bpf) % _BPF_INSN_SIZE or len(bpf) // _BPF_INSN_SIZE > _BPF_MAXINSNS:
        raise errdefs.InvalidArgument(f"seccomp: not a BPF program ({len(bpf)} bytes)")
    _seccomp_nr()
    return Program(bpf, flags)


def filter_flags(seccomp: dict) -> int:
    """The seccomp(2) flags for the OCI ``flags`` list."""
    flags = 0
    for flag in seccomp.get("flags") or []:
        if flag not in _FLAGS:
            raise errdefs.InvalidArgument(f"seccomp: unsupported flag {flag!r}")
        flags |= _FLAGS[flag]
    return flags


def install(program: Program) -> None:
    """Load ``program`` into the calling thread: seccomp(SECCOMP_SET_MODE_FILTER).

    EACCES: neither no_new_privs nor CAP_SYS_ADMIN; EINVAL: a malformed program
    or a flag this kernel does not know. Only a few syscalls run here, so this is
    safe as the very last step before execve under any sane profile.
    """
    count = len(program.bpf) // _BPF_INSN_SIZE
    buffer = ctypes.create_string_buffer(program.bpf, len(program.bpf))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxP", count, ctypes.addressof(buffer)))
    rc = libc.syscall(_seccomp_nr(), SECCOMP_SET_MODE_FILTER, program.flags, fprog)
    check(rc, "seccomp(SECCOMP_SET_MODE_FILTER)")


@functools.cache
def _seccomp_nr() -> int:
    number = resolve_syscall("seccomp")
    if number is None or number < 0:
        raise errdefs.System("seccomp(2) is not available on this architecture")
    return number


def load_filter(seccomp: dict) -> None:
    """Build the filter for the OCI ``linux.seccomp`` object and install it."""
    with build_filter(seccomp) as filt:
        filt.load()


def _add_syscall_rule(filt: Filter, rule: dict) -> None:
    act = action(rule.get("action") or "", rule.get("errnoRet"))
    if act == filt.default_action:
        return  # redundant, and libseccomp refuses it
    conditions = [_condition(arg) for arg in rule.get("args") or []]
    indexes = [c.index for c in conditions]
    # libseccomp ANDs conditions but cannot take two on one argument; runc falls
    # back to one rule per condition (OR) then, and so do we.
    groups = [[c] for c in conditions] if len(set(indexes)) < len(indexes) else [conditions]
    for name in rule.get("names") or []:
        number = resolve_syscall(name)
        if number is None:
            continue  # unknown to this libseccomp: skipped as runc does
        for group in groups:
            filt.add_rule(act, number, group)


def _condition(arg: dict) -> Condition:
    index = int(arg.get("index", 0))
    if not 0 <= index < _MAX_ARGS:
        raise errdefs.InvalidArgument(f"seccomp: argument index {index} out of range")
    op = arg.get("op") or ""
    if op not in OPERATORS:
        raise errdefs.InvalidArgument(f"seccomp: unknown comparison operator {op!r}")
    return Condition(index, OPERATORS[op], int(arg.get("value", 0)), int(arg.get("valueTwo", 0)))
