"""Load a whole object (an :class:`~pyxdp.spec.ObjectSpec`) into the kernel, libbpf-style.

Order matters and follows libbpf: BTF first (maps and programs refer to it), then maps
(``.rodata`` filled and frozen *before* any program load, so the verifier can treat its
values as constants), then CO-RE relocation against the running kernel's BTF, then the
programs, and last the initial slots of prog arrays and map-in-maps, which need both.
Global data maps get libbpf's flags (``BPF_F_MMAPABLE``; ``.rodata*`` also
``BPF_F_RDONLY_PROG``) and ``.rodata`` is bound to every program (BPF_PROG_BIND_MAP).

::

    spec = load_object("prog.o")
    set_variable(spec, "ret_action", 1)
    with load_collection(spec) as coll:
        coll.programs["xdp_main"].test_run(packet)
        coll.variables["packets"].value
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno as _errno
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pyxdp.abi import LIBBPF_PIN_BY_NAME, AttachType, Cmd, MapType, ProgBindMapAttr, ProgType
from pyxdp.backend import Variable
from pyxdp.btf import Btf, BtfFeatures, CoreResolver, Kind, apply_core_relocations, sanitize
from pyxdp.btf import load_vmlinux as _load_vmlinux
from pyxdp.elf import classify_section, section_names
from pyxdp.errors import (
    BpfError,
    BtfError,
    ElfError,
    MapError,
    NotSupportedError,
    PyxdpError,
    VerifierError,
)
from pyxdp.kernel._externs import kconfig_contents, patch_externs, resolve_ksyms
from pyxdp.kernel._fd import Fd
from pyxdp.kernel._map import BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, Map
from pyxdp.kernel._pin import make_pin_dir, obj_pin, pin_name, remove_dirs, unpin
from pyxdp.kernel._prog import Program
from pyxdp.kernel._sys import ENOTSUPP, bpf, possible_cpus
from pyxdp.kernel.features import load_btf
from pyxdp.maps import MapSpec, check_reuse_compat
from pyxdp.spec import ObjectSpec, ProgramSpec

PIN_BY_NAME = LIBBPF_PIN_BY_NAME
KCONFIG = ".kconfig"
# the sections the ELF reader turns into global data maps (keys of ObjectSpec.maps)
_DATA_SECTION = re.compile(r"^\.(data|rodata|bss)(\..+)?$|^\.kconfig$")
# map types the kernel refuses BTF key/value ids for (libbpf drops them the same way)
_NO_BTF_MAPS = frozenset({
    MapType.PERF_EVENT_ARRAY, MapType.PROG_ARRAY, MapType.CGROUP_ARRAY,
    MapType.STACK_TRACE, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.DEVMAP,
    MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP, MapType.SOCKMAP, MapType.SOCKHASH,
    MapType.QUEUE, MapType.STACK, MapType.RINGBUF})


class Collection:
    """Loaded programs, maps and variables of one object; closing it releases them all
    (pinned objects and anything a link holds stay alive in the kernel)."""

    def __init__(self) -> None:
        self.programs: dict[str, Program] = {}
        self.maps: dict[str, Map] = {}
        self.variables: dict[str, Variable] = {}
        self.btf_fd: Fd | None = None
        self.core_results: dict[str, list[Any]] = {}
        # where :meth:`pin` put each program and map (object name -> pin path)
        self.program_pins: dict[str, str] = {}
        self.map_pins: dict[str, str] = {}
        self._made_dirs: list[str] = []
        self.borrowed: set[str] = set()     # maps the caller passed in: theirs to close

    def pin(self, path: str) -> None:
        """Pin every program and map under the bpffs directory ``path``.

        The pin-naming rule, the one pyxdp uses everywhere (``pyxdp load --pin``,
        ``pyxdp attach``, :func:`pyxdp.xdp.attach_pinned`); for programs and maps it is
        libbpf's ``bpf_object__pin``, the layout ``bpftool prog loadall OBJ DIR pinmaps
        DIR`` makes:

        * program ``P`` -> ``<path>/P``;
        * map ``M`` -> ``<path>/M``, with the kernel's name of the map, so global data maps
          carry the object's prefix (``.rodata`` of ``xdp_prog.o`` -> ``xdp_prog_rodata``);
        * the bpf_link holding program ``P`` (pinned by :func:`pyxdp.xdp.attach_pinned`)
          -> ``<path>/P_link``;
        * dots and slashes in a name become underscores (:func:`pin_name`; bpffs refuses
          dots).

        A map declared ``pinning = BY_NAME`` and loaded with ``pin_path=path`` is already
        where this rule puts it (same id): it is recorded, not pinned twice.

        ``path`` is created if missing and must be on bpffs.  All or nothing: if any pin
        fails (a name already taken, two objects with one pin name), the pins this call
        made are removed again, and the directories it created, before the error goes on.
        Where each object went is in :attr:`program_pins` / :attr:`map_pins`; pins outlive
        the collection until :meth:`unpin` (or ``rm``) removes them.
        """
        if self.program_pins or self.map_pins:
            where = next(iter({**self.program_pins, **self.map_pins}.values()))
            raise PyxdpError(f"collection is pinned already ({where}); unpin() it first")
        path = os.path.abspath(path)
        plan: list[tuple[str, str, Program | Map, str]] = [
            ("map", name, m, os.path.join(path, pin_name(m.spec.name)))
            for name, m in self.maps.items()]
        plan += [("program", name, p, os.path.join(path, pin_name(name)))
                 for name, p in self.programs.items()]
        seen: dict[str, str] = {}
        for kind, name, _, target in plan:
            if target in seen:
                raise PyxdpError(f"{seen[target]} and {kind} {name!r} would both be pinned"
                                 f" at {target}")
            seen[target] = f"{kind} {name!r}"
        made = make_pin_dir(path)
        pins: dict[str, dict[str, str]] = {"map": {}, "program": {}}
        done: list[str] = []
        try:
            for kind, name, obj, target in plan:
                if os.path.lexists(target):
                    if kind == "map" and self._pinned_there(obj, target):
                        pins[kind][name] = target        # BY_NAME: the loader pinned it
                        continue
                    raise PyxdpError(f"cannot pin {kind} {name!r}: {target} already exists"
                                     " (unpin it, or pin under another directory)")
                obj_pin(obj.fd, target)
                done.append(target)
                pins[kind][name] = target
        except BaseException:
            for target in done:
                unpin(target, missing_ok=True)
            remove_dirs(made)
            raise
        self.map_pins, self.program_pins = pins["map"], pins["program"]
        self._made_dirs = made

    @staticmethod
    def _pinned_there(m: Map | Program, path: str) -> bool:
        """Whether the pin at ``path`` is map ``m`` itself."""
        try:
            with Map.from_pin(path) as there:
                return there.id == m.id
        except (PyxdpError, OSError):
            return False

    def unpin(self) -> None:
        """Remove every pin :meth:`pin` recorded (a BY_NAME map found there too, as libbpf's
        ``bpf_object__unpin`` does) and the directories it created, if they are empty.
        The objects live on while this collection or anything else holds them."""
        for target in [*self.program_pins.values(), *self.map_pins.values()]:
            unpin(target, missing_ok=True)
        remove_dirs(self._made_dirs)
        self.program_pins, self.map_pins, self._made_dirs = {}, {}, []

    def close(self) -> None:
        for p in self.programs.values():
            p.close()
        for name, m in self.maps.items():
            if name not in self.borrowed:
                m.close()
        if self.btf_fd is not None:
            self.btf_fd.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self.programs)

    def __repr__(self) -> str:
        return (f"<Collection programs={list(self.programs)} maps={list(self.maps)}"
                f" variables={list(self.variables)}>")


def load_pinned(obj: ObjectSpec, path: str, **kwargs: Any) -> Collection:
    """Load ``obj`` and pin it under ``path``: :func:`load_collection` with ``pin_path=path``
    (BY_NAME maps are reused from there) and :meth:`Collection.pin` (its naming rule).

    All or nothing: ``path`` is checked to be on bpffs before anything is loaded, and when
    the load or a pin fails, ``path`` is left as it was found (the directories this call
    created are removed, and so are BY_NAME pins the load made).  ``kwargs`` go to
    :func:`load_collection`.  :meth:`Collection.unpin` undoes it, directories included.
    """
    made = make_pin_dir(path)
    by_name = [os.path.join(path, s.name) for s in obj.maps.values() if s.pinning == PIN_BY_NAME]
    found = {p for p in by_name if os.path.lexists(p)}
    try:
        coll = load_collection(obj, path, **kwargs)
        try:
            coll.pin(path)
        except BaseException:
            coll.close()
            for p in by_name:
                if p not in found:
                    unpin(p, missing_ok=True)
            raise
    except BaseException:
        remove_dirs(made)
        raise
    coll._made_dirs = made + coll._made_dirs
    return coll


def _load_btf(btf: Btf, features: BtfFeatures) -> Fd | None:
    """BPF_BTF_LOAD; like libbpf, a kernel that refuses the BTF only costs the debug info."""
    try:
        return load_btf(sanitize(btf, features).encode())
    except BpfError as e:
        if e.errno == _errno.EPERM:
            raise
        return None


def _check_pinned(name: str, pinned: Map, spec: MapSpec) -> None:
    check_reuse_compat(name, pinned.spec, spec)


def is_data_map(name: str, spec: MapSpec) -> bool:
    """Whether ``name`` is a global data map (``.data``, ``.rodata.cfg``, ``.bss``, ...)."""
    return bool(_DATA_SECTION.match(name)) and spec.type == MapType.ARRAY and (
        spec.max_entries == 1)


def data_map_spec(name: str, spec: MapSpec) -> MapSpec:
    """The spec a global data map is created from, with libbpf's flags added.

    ``.rodata*`` gets BPF_F_RDONLY_PROG: together with the freeze after filling it, the
    verifier may then treat its contents as constants (dead-code elimination on config
    knobs) *and* rejects any program store into it.  Every data map gets BPF_F_MMAPABLE as
    libbpf 1.1 (the bpftool we compare against) sets it, so the maps look the same to
    ``bpftool map show`` and a pin can be shared with libbpf-loaded programs (libbpf's
    ``map_is_reuse_compat`` compares flags).  Other maps are returned unchanged.
    """
    if not is_data_map(name, spec):
        return spec
    flags = spec.flags
    if name.startswith(".rodata") or name == KCONFIG:
        flags |= BPF_F_RDONLY_PROG
    flags |= BPF_F_MMAPABLE
    return spec if flags == spec.flags else dataclasses.replace(spec, flags=flags)


def _bind_map(prog: Program, m: Map) -> None:
    """BPF_PROG_BIND_MAP ``m`` to ``prog``, as libbpf binds ``.rodata`` to every program
    (its ``bpf_metadata_*`` variables stay reachable via ``prog.info().map_ids`` even when
    no instruction reads them).  Kernels before 5.10 lack the command: skip, like libbpf."""
    try:
        bpf(Cmd.PROG_BIND_MAP, ProgBindMapAttr(prog_fd=prog.fd.fileno(),
                                                map_fd=m.fd.fileno()))
    except BpfError as e:
        if e.errno not in (_errno.EINVAL, ENOTSUPP, _errno.EOPNOTSUPP):
            raise


def _create_data_or_map(name: str, spec: MapSpec, btf_fd: Fd | None,
                        pin_path: str | None, new_pins: list[str] | None = None) -> Map:
    """Create map ``name``; a data map with libbpf's flags, and, like libbpf's
    FEAT_ARRAY_MMAP fallback, without BPF_F_MMAPABLE on kernels before 5.5 (EINVAL)."""
    want = data_map_spec(name, spec)
    try:
        return _create_map(name, want, btf_fd, pin_path, new_pins)
    except BpfError as e:
        if want is spec or e.errno != _errno.EINVAL or not want.flags & BPF_F_MMAPABLE:
            raise
    return _create_map(name, dataclasses.replace(want, flags=want.flags & ~BPF_F_MMAPABLE),
                       btf_fd, pin_path, new_pins)


def _create_map(name: str, spec: MapSpec, btf_fd: Fd | None, pin_path: str | None,
                new_pins: list[str] | None = None) -> Map:
    # without a pin_path a BY_NAME map has nowhere to live: it is an ordinary map then
    pin = os.path.join(pin_path, spec.name) if pin_path and spec.pinning == PIN_BY_NAME else None
    if pin is not None and os.path.exists(pin):
        m = Map.from_pin(pin)
        try:
            _check_pinned(name, m, spec)
        except BaseException:
            m.close()
            raise
        return m
    if spec.type == MapType.PERF_EVENT_ARRAY and not spec.max_entries:
        # libbpf: a perf event array without max_entries gets one slot per possible CPU
        spec = dataclasses.replace(spec, max_entries=possible_cpus())
    use_btf = btf_fd if spec.type not in _NO_BTF_MAPS and (
        spec.key_type_id or spec.value_type_id) else None
    try:
        try:
            m = Map.create(spec, btf_fd=use_btf)
        except BpfError as e:
            if use_btf is None or e.errno == _errno.EPERM:
                raise
            m = Map.create(spec)      # libbpf retries without BTF too
    except BpfError as e:
        raise _named_map_error(name, spec, e) from e
    if pin is not None:
        try:
            os.makedirs(os.path.dirname(pin), exist_ok=True)
            obj_pin(m.fd, pin)
        except BaseException:
            m.close()
            raise
        if new_pins is not None:
            new_pins.append(pin)
    return m


def _named_map_error(name: str, spec: MapSpec, e: BpfError) -> BpfError:
    """``e`` again, saying which map could not be created and what it asked for."""
    kind = spec.type.name if isinstance(spec.type, MapType) else str(spec.type)
    what = (f"map {name!r}: failed to create ({kind}, key_size {spec.key_size},"
            f" value_size {spec.value_size}, max_entries {spec.max_entries}"
            + (f", map_flags {spec.flags:#x}" if spec.flags else "")
            + (f", map_extra {spec.map_extra:#x}" if spec.map_extra else "") + ")")
    detail = getattr(e, "detail", "")
    return BpfError(e.errno, e.command, what + (f": {detail}" if detail else ""))


def _named_prog_error(name: str, prog: ProgramSpec, e: BpfError) -> BpfError:
    """``e`` (a refusal that is not the verifier's: EPERM by a policy, E2BIG, ...) again,
    saying which program of which section the kernel refused, as libbpf's "prog 'X':
    failed to load" does."""
    what = f"program {name!r} (section {prog.section!r}, type {_type_name(prog.type)})"
    detail = getattr(e, "detail", "")
    return BpfError(e.errno, e.command, what + (f": {detail}" if detail else ""))


def check_loadable(obj: ObjectSpec) -> None:
    """Refuse, before anything is created, what libbpf refuses before loading: programs
    whose section says no type, and freplace programs without a program to replace."""
    for pname, p in obj.programs.items():
        if p.type == ProgType.UNSPEC:
            raise ElfError(
                f"program {pname!r}: failed to guess program type from ELF section"
                f" {p.section!r} (supported section names: {section_names()}); force one with"
                f" load_object(path, prog_type='xdp') (pyxdp load OBJ --type xdp; bpftool:"
                " prog loadall ... type xdp)")
        if p.type == ProgType.EXT:
            raise ElfError(
                f"program {pname!r} (section {p.section!r}): freplace needs the program it"
                " replaces: attach program FD is not set (load it on its own with"
                " Program.load(spec, attach_prog_fd=target, attach_btf_id=func_id))")


# the program types that attach by a kernel BTF id (libbpf's SEC_ATTACH_BTF sections:
# tp_btf/, fentry/, fexit/, fmod_ret/, lsm/, iter/; freplace/ targets a program instead)
_BTF_ATTACH_TYPES = frozenset({ProgType.TRACING, ProgType.LSM})
# libbpf's btf_get_kernel_prefix_kind: attach type -> (name prefix, BTF kind) in vmlinux
_KERNEL_PREFIX = {AttachType.TRACE_RAW_TP: ("btf_trace_", Kind.TYPEDEF),
                  AttachType.LSM_MAC: ("bpf_lsm_", Kind.FUNC),
                  AttachType.LSM_CGROUP: ("bpf_lsm_", Kind.FUNC),
                  AttachType.TRACE_ITER: ("bpf_iter_", Kind.FUNC)}


def _needs_attach_lookup(prog: ProgramSpec) -> bool:
    """Whether ``prog`` attaches by a vmlinux BTF id: a TRACING/LSM program with a target,
    or of a section that attaches by one (which must then name it)."""
    if prog.type not in _BTF_ATTACH_TYPES:
        return False
    return bool(prog.attach_to) or classify_section(prog.section).type == prog.type


def _type_name(t: ProgType | int) -> str:
    return t.name.lower() if isinstance(t, ProgType) else str(t)


def _attach_btf_id(prog: ProgramSpec, vmlinux: Btf | None) -> int:
    """The vmlinux BTF id a tracing/LSM program attaches to (0 when it needs none).

    libbpf's rules: the target is what follows the section's ``/``, looked up with the
    prefix and kind of the program's expected attach type (``btf_trace_`` TYPEDEF for
    tp_btf, ``bpf_lsm_`` for LSM, ``bpf_iter_`` for iterators, the bare FUNC otherwise);
    such a section without a target, or a target the kernel lacks, is refused."""
    if not _needs_attach_lookup(prog):
        return 0
    if not prog.attach_to:
        raise BtfError(f"program {prog.name!r} (section {prog.section!r}): no BTF-based"
                       " attach target is specified (name it in the section, e.g."
                       " fentry/<function>)")
    if vmlinux is None:
        raise BtfError(f"program {prog.name!r} needs kernel BTF to find {prog.attach_to!r}")
    at = prog.expected_attach_type
    if at is None and prog.type == ProgType.LSM:
        at = AttachType.LSM_MAC                    # a spec built by hand, without one
    prefix, kind = _KERNEL_PREFIX.get(at, ("", Kind.FUNC)) if at is not None else ("", Kind.FUNC)
    name = prefix + prog.attach_to
    ids = vmlinux.find(name, kind)
    if not ids:
        raise BtfError(f"program {prog.name!r} (section {prog.section!r}): kernel has no"
                       f" {kind.name} {name!r} to attach to")
    return ids[0]


def load_collection(obj: ObjectSpec, pin_path: str | None = None, *,
                    vmlinux: Btf | None = None, features: BtfFeatures | None = None,
                    log_level: int = 0, maps: Mapping[str, Map] | None = None) -> Collection:
    """Load every map and program of ``obj``.

    ``pin_path`` is the bpffs directory for maps declared with ``pinning = BY_NAME``: an
    existing pin of the same name is reused (and checked for the same layout), otherwise
    the new map is pinned there.  ``maps`` gives existing maps to use for maps of these
    names instead of creating them (checked for the same layout; libbpf's
    ``bpf_map__reuse_fd``); the collection does not close them.  ``vmlinux`` is the target
    BTF for CO-RE (default: the running kernel's).  On any failure everything created so
    far is closed again.
    """
    coll = Collection()
    new_pins: list[str] = []
    try:
        _load_into(coll, obj, pin_path, vmlinux, features or BtfFeatures(), log_level,
                   new_pins, maps or {})
    except BaseException:
        coll.close()
        # like libbpf: pins this load made go too, or the next load would reuse half-made
        # state; pins that existed before are left alone
        for pin in new_pins:
            with contextlib.suppress(OSError):
                os.unlink(pin)
        raise
    return coll


def _needs_vmlinux(obj: ObjectSpec) -> bool:
    used = {n for p in obj.programs.values() for n in p.extern_refs.values()}
    return any(obj.externs[n].kind == "kfunc" or obj.externs[n].type_id for n in used) or any(
        p.core_relos or _needs_attach_lookup(p) for p in obj.programs.values())


def _load_into(coll: Collection, obj: ObjectSpec, pin_path: str | None, vmlinux: Btf | None,
               features: BtfFeatures, log_level: int, new_pins: list[str],
               given: Mapping[str, Map]) -> None:
    check_loadable(obj)
    if obj.btf is not None:
        coll.btf_fd = _load_btf(obj.btf, features)
    slotted = set(obj.map_slots)
    unknown = set(given) - set(obj.maps)
    if unknown:
        raise MapError(f"maps given for {sorted(unknown)}, which the object does not declare")
    for name, spec in obj.maps.items():
        if name in given:
            check_reuse_compat(name, given[name].spec, spec)
            coll.maps[name] = given[name]
            coll.borrowed.add(name)
            continue
        if name == KCONFIG and obj.externs:
            spec = dataclasses.replace(spec, contents=[
                (bytes(4), kconfig_contents(obj, spec.value_size))])
        coll.maps[name] = _create_data_or_map(name, spec, coll.btf_fd, pin_path, new_pins)
    for vname, var in obj.variables.items():
        if var.map_name in coll.maps:
            coll.variables[vname] = Variable(var, coll.maps[var.map_name])
    if vmlinux is None and _needs_vmlinux(obj):
        vmlinux = _load_vmlinux()
    resolver = CoreResolver(obj.btf, vmlinux) if obj.btf is not None and vmlinux else None
    ksyms = resolve_ksyms(obj, vmlinux) if any(
        p.extern_refs for p in obj.programs.values()) else {}
    for pname, pspec in obj.programs.items():
        prog = pspec
        if pspec.extern_refs:
            prog = copy.copy(pspec)
            prog.instructions = patch_externs(pspec, ksyms)
            prog.extern_refs = {}
        if pspec.core_relos:
            if resolver is None:
                raise BtfError(f"program {pname!r} has CO-RE relocations but no BTF to"
                               " resolve them against")
            prog = copy.copy(prog)
            prog.instructions = list(prog.instructions)
            prog.map_refs = dict(prog.map_refs)
            # the resolver's local/target are obj.btf and vmlinux
            coll.core_results[pname] = apply_core_relocations(prog, resolver.local,
                                                              resolver.target, resolver)
        with_btf = coll.btf_fd is not None
        try:
            coll.programs[pname] = Program.load(
                prog, maps=coll.maps, btf_fd=coll.btf_fd if with_btf else None,
                func_info=None if with_btf else [], line_info=None if with_btf else [],
                attach_btf_id=_attach_btf_id(prog, vmlinux), log_level=log_level)
        except (VerifierError, NotSupportedError):
            raise             # they name the program and log line / the missing feature
        except BpfError as e:
            raise _named_prog_error(pname, prog, e) from e
        if ".rodata" in coll.maps and is_data_map(".rodata", obj.maps[".rodata"]):
            _bind_map(coll.programs[pname], coll.maps[".rodata"])
    for mname in slotted:
        target = coll.maps[mname]
        for idx, what in obj.map_slots[mname].items():
            source: Mapping[str, Any] = coll.maps
            if obj.maps[mname].type == MapType.PROG_ARRAY:
                source = coll.programs
            if what not in source:
                raise MapError(f"map {mname!r} slot {idx}: {what!r} was not loaded")
            target[idx] = source[what]


__all__ = ["BPF_F_MMAPABLE", "BPF_F_RDONLY_PROG", "Collection", "Variable", "data_map_spec",
           "is_data_map", "load_collection", "load_pinned"]
