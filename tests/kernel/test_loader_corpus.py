"""The loader corpus: every BPF object we have, loaded by ``bpftool prog loadall`` (libbpf)
and by pyxdp (``load_object`` + ``load_collection``), must get the same verdict (issue 10).

The corpus is every ``.o`` of the Debian ``xdp-tools``/``libxdp1`` packages and every
``tests/data/obj/*.o`` (built from ``tests/data/c``), each loaded twice: as its sections
say, and with the type forced to XDP (bpftool ``type xdp``, pyxdp ``prog_type="xdp"``; the
way to load ``legacy_section.o``, whose section no table knows).  Both sides get the same
arguments.  Per case:

* bpftool loads it: pyxdp must load it too, the same programs, and every program's kernel
  tag (the hash of the instructions the kernel accepted) must equal bpftool's, as must its
  type, GPL flag, BTF presence and map count; and the maps must be the same maps (kernel
  name, type, sizes, flags, map_extra, BTF key/value types), ids aside;
* bpftool refuses it: pyxdp must refuse it with a :class:`~pyxdp.errors.PyxdpError` (never
  a bare OSError or another exception), and every program, map, extern or section libbpf's
  reason names must be named in pyxdp's message too; a pyxdp EPERM must be an EPERM for
  libbpf as well.  This sandbox refuses fentry programs (TRACING on a trampoline) and
  ARENA map creation with EPERM even for root: "both refuse with EPERM" counts as
  agreement (``btf_attach.o``); freplace (EXT) objects stop earlier, for want of a target
  program, on both sides;
* bpftool crashes (``btf_attach.o`` and ``freplace.o`` with ``type xdp``: libbpf 1.1 keeps
  a section's handler after ``bpf_program__set_type`` and dereferences a NULL vmlinux BTF
  resolving the attach target of ``fentry/...``/``freplace/...`` for an XDP program):
  there is no verdict to compare.  libbpf 1.2 fixed it ("libbpf: disassociate section
  handler on explicit bpf_program__set_type() call", because keeping it "could lead to
  crashes"): when the type changes, the section's handling is dropped and every program
  loads as the forced type; pyxdp must do exactly that
  (:func:`pyxdp.elf._object.forced_kind`).  The same rule makes
  ``xdpdump_bpf.o`` with ``type xdp`` a verifier refusal of ``trace_on_entry`` in pyxdp,
  where libbpf 1.1 refuses the same program for its attach target first.

Known, intended differences (:data:`KNOWN`), each asserted exactly: this bpftool's libbpf
1.1 predates ``__ulong()`` map fields (libbpf 1.4) and refuses ``map_extra`` given as an
enum; pyxdp reads them as current libbpf does (``map_extra.o`` loads; ``arena.o`` then
meets the sandbox's EPERM on ARENA maps, where a libbpf 1.4 would stop too).

The outcome of every case is written to ``bench/results/loader_corpus.md`` by running
this file: ``PYTHONPATH=src python3 tests/kernel/test_loader_corpus.py`` (root).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from libbpf_ref import Reference, bpftool_loadall

from pyxdp.abi import AttachType, ProgType
from pyxdp.elf import classify_section, load_object
from pyxdp.elf._object import forced_kind
from pyxdp.elf._sections import F_FRAGS, F_SLEEPABLE
from pyxdp.errors import BpfError, BtfError, PyxdpError
from pyxdp.kernel import load_collection

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).parent.parent.parent
OBJ = ROOT / "tests" / "data" / "obj"
RESULTS = ROOT / "bench" / "results" / "loader_corpus.md"
FORCED = "xdp"


def package_objects(*packages: str) -> list[str]:
    """The ``.o`` files the Debian packages install (none if dpkg or a package is absent)."""
    r = subprocess.run(["dpkg", "-L", *packages], capture_output=True, text=True) \
        if shutil.which("dpkg") else None
    out = r.stdout.split() if r is not None else []
    return sorted({p for p in out if p.endswith(".o") and os.path.isfile(p)})


DEBIAN = package_objects("xdp-tools", "libxdp1")
OURS = sorted(str(p) for p in OBJ.glob("*.o"))
CASES = [(path, typ) for typ in (None, FORCED) for path in DEBIAN + OURS]


def case_id(path: str, prog_type: str | None) -> str:
    return Path(path).name + (f"-type_{prog_type}" if prog_type else "")


@dataclass(frozen=True)
class Known:
    """A difference we keep on purpose: what libbpf 1.1 says, and why pyxdp differs."""

    reference: str              # must be in bpftool's reason
    pyxdp_loads: bool           # else pyxdp refuses with EPERM, naming the map
    why: str


ULONG = "libbpf 1.1 predates __ulong() map fields (libbpf 1.4); pyxdp reads them"
KNOWN = {
    "map_extra.o": Known("map 'bloom': attr 'map_extra': expected PTR, got enum", True,
                         ULONG + " and loads it"),
    "arena.o": Known("map 'arena': attr 'map_extra': expected PTR, got enum", False,
                     ULONG + ", then the sandbox refuses the ARENA map (EPERM)"),
}

# the names a libbpf reason line points at, to be found in pyxdp's message as well
_NAMED = re.compile(r"(?:prog|map|extern) '([^']+)'|ELF section '([^']+)'|'([^']+)' section")


@dataclass
class Outcome:
    path: str
    prog_type: str | None
    ref: Reference
    tags: dict[str, str] | None       # pyxdp's program name -> tag, when it loaded
    shape: dict[str, tuple[Any, ...]] | None     # and what else its ProgInfo says (below)
    maps: list[tuple[Any, ...]] | None            # map_shape() of every map it created
    error: BaseException | None       # what pyxdp raised otherwise

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def ref_crashed(self) -> bool:
        return self.ref.returncode < 0

    def ref_headline(self) -> str:
        """libbpf's first line that names something (its reason), else its first line."""
        lines = self.ref.reason.split(" | ")
        return next((ln for ln in lines if _NAMED.search(ln)), lines[0])

    def ref_names(self) -> set[str]:
        return {"".join(m) for m in _NAMED.findall(self.ref.reason)}


def run_case(path: str, prog_type: str | None, root: str) -> Outcome:
    """Load ``path`` with bpftool (pins under ``root``, removed again) and with pyxdp."""
    ref = bpftool_loadall(path, root, prog_type)
    try:
        spec = load_object(path, prog_type=prog_type)
        with load_collection(spec) as coll:
            infos = {n: p.info() for n, p in coll.programs.items()}
            maps = sorted(map_shape(m.info()) for m in coll.maps.values())
    except Exception as e:     # judged by the test: a non-pyxdp exception is a failure
        return Outcome(path, prog_type, ref, None, None, None, e)
    return Outcome(path, prog_type, ref, {n: i.tag for n, i in infos.items()},
                   {n: shape(i) for n, i in infos.items()}, maps, None)


def shape(info: Any) -> tuple[Any, ...]:
    """What must match besides the tag: type, GPL, whether the program carries BTF (func
    and line info), and how many maps it holds (libbpf binds .rodata to each, so do we)."""
    return (info.type, info.gpl_compatible, info.btf_id != 0, len(info.map_ids))


def map_shape(info: Any) -> tuple[Any, ...]:
    """A map as the kernel has it, ids aside: its kernel name (``xdp_disp.rodata``), type,
    sizes, flags (libbpf's MMAPABLE/RDONLY_PROG), map_extra, and whether it carries BTF."""
    return (info.name, int(info.type), info.key_size, info.value_size, info.max_entries,
            info.flags, info.map_extra, info.btf_id != 0, info.btf_key_type_id != 0,
            info.btf_value_type_id != 0)


def _is_eperm(e: BaseException | None) -> bool:
    return isinstance(e, BpfError) and e.errno == errno.EPERM


def _ref_eperm(ref: Reference) -> bool:
    return "Operation not permitted" in ref.reason or ": -1" in ref.reason


def check(o: Outcome) -> str:
    """Assert the rules of the module doc for one case; returns the verdict in words."""
    err = o.error
    if err is not None and not isinstance(err, PyxdpError):
        raise AssertionError(f"pyxdp crashed instead of refusing: {type(err).__name__}: {err}")
    known = KNOWN.get(o.name)
    if known is not None and not o.ref.ok:
        assert known.reference in o.ref.reason, o.ref.stderr
        if known.pyxdp_loads:
            assert err is None, err
        else:
            assert _is_eperm(err), err
            assert all(f"'{n}'" in str(err) for n in o.ref_names()), err
        return f"known difference: {known.why}"
    if o.ref.ok:
        assert err is None, f"bpftool loads it, pyxdp refuses: {err}"
        assert o.tags == o.ref.tags
        assert o.shape == {n: shape(i) for n, i in o.ref.infos.items()}
        assert o.maps == sorted(map_shape(i) for i in o.ref.map_infos.values())
        return f"both load, {len(o.tags or {})} program(s), tags equal"
    if o.ref_crashed:
        # no libbpf verdict: libbpf 1.2+'s is that a forced type drops the section handling
        assert o.prog_type is not None, f"bpftool crashed (signal {-o.ref.returncode})"
        assert err is None, f"bpftool crashed, pyxdp refuses: {err}"
        want = classify_section(o.prog_type).type
        assert o.shape and all(sh[0] == want for sh in o.shape.values()), o.shape
        return (f"bpftool crashed (signal {-o.ref.returncode}); pyxdp loads every program as"
                f" {o.prog_type}, as libbpf 1.2+ does")
    assert err is not None, (f"bpftool refuses it ({o.ref.reason or o.ref.returncode}),"
                             f" pyxdp loaded {sorted(o.tags or {})}")
    msg = str(err)
    missing = {n for n in o.ref_names() if f"'{n}'" not in msg}
    assert not missing, f"libbpf names {sorted(missing)}, pyxdp does not: {msg}"
    assert o.ref_names() or re.search(r"'[^']+'", msg), msg
    if _is_eperm(err):
        assert _ref_eperm(o.ref), f"pyxdp's EPERM is not libbpf's: {o.ref.reason}"
        return "both refuse with EPERM (the sandbox's policy), same names"
    return "both refuse, same names"


@pytest.mark.skipif(not DEBIAN, reason="xdp-tools/libxdp1 objects not installed")
@pytest.mark.parametrize(("path", "prog_type"), CASES,
                         ids=[case_id(p, t) for p, t in CASES])
def test_same_verdict_as_bpftool(path: str, prog_type: str | None, pin_dir: str) -> None:
    o = run_case(path, prog_type, pin_dir)
    try:
        check(o)
    finally:
        o.error = None                 # drop the traceback (and the fds its frames hold)


def test_known_differences_are_what_pyxdp_does(pin_dir: str) -> None:
    """The two :data:`KNOWN` objects: pyxdp's side of the difference, exactly."""
    s = load_object(OBJ / "map_extra.o")
    with load_collection(s) as c:
        assert c.maps["bloom"].info().map_extra == 3
        assert c.maps["bloom5"].info().map_extra == 5
        assert c.programs["bloom_prog"].test_run(bytes(64)).retval == 2
    with pytest.raises(BpfError) as ei:
        load_collection(load_object(OBJ / "arena.o"))
    if ei.value.errno != errno.EPERM:
        raise AssertionError(f"ARENA not refused with EPERM here: {ei.value}")
    assert "map 'arena': failed to create (ARENA" in str(ei.value)


def test_every_case_has_a_verdict() -> None:
    """The corpus is what the issue says, and not empty by accident."""
    names = {Path(p).name for p in OURS}
    assert {"legacy_section.o", "btf_attach.o", "map_extra.o", "freplace.o"} <= names
    assert len(CASES) == 2 * (len(DEBIAN) + len(OURS))
    if DEBIAN:
        assert "xdp-dispatcher.o" in {Path(p).name for p in DEBIAN}


# -- regressions of the discrepancies the corpus found -----------------------------------------
def test_forced_type_drops_the_handling_of_a_section_of_another_type() -> None:
    """``type xdp`` on ``fentry/<f>``, ``fentry``, ``iter/...``: plain XDP programs, as libbpf
    1.2+ loads them (1.1 crashes: see the module doc)."""
    s = load_object(OBJ / "btf_attach.o", prog_type="xdp")
    assert all((p.type, p.flags, p.attach_to) == (ProgType.XDP, 0, "")
               for p in s.programs.values())
    with load_collection(s) as c:
        assert {n: p.test_run(bytes(64)).retval for n, p in c.programs.items()} == {
            "known_target": 2, "missing_target": 2, "no_target": 2, "map_iter": 0}


def test_forced_type_keeps_the_flags_of_a_section_of_the_same_type() -> None:
    """``xdp.frags`` forced to ``xdp`` stays a frags program (libbpf keeps the section's
    handler when the type does not change); pyxdp took the flags of the forced name and
    dropped BPF_F_XDP_HAS_FRAGS.  And ``xdp`` forced to ``xdp.frags`` gains no frags."""
    s = load_object(OBJ / "frags.o", prog_type="xdp")
    assert s.programs["frags_prog"].flags == F_FRAGS
    assert s.programs["devmap_prog"].flags == 0
    assert {p.expected_attach_type for p in s.programs.values()} == {AttachType.XDP}
    m = load_object(OBJ / "multi.o", prog_type="xdp.frags")
    assert {p.flags for p in m.programs.values()} == {0}
    sleepy = forced_kind(classify_section("fentry.s/f"), classify_section("fexit/f"))
    assert (sleepy.flags, sleepy.expected_attach_type, sleepy.attach_to) == (
        F_SLEEPABLE, AttachType.TRACE_FEXIT, "f")


@pytest.mark.netns
def test_forced_frags_flag_reaches_the_kernel() -> None:
    """What the frags flag changes: native XDP on a veth whose peer has a 9000-byte MTU
    takes only frags programs.  ``frags_prog`` forced to ``xdp`` attaches; an ``xdp``
    program forced to ``xdp.frags`` is refused (it has no frags, as with bpftool)."""
    from pyxdp import testbed, xdp
    from pyxdp.xdp import XdpError

    with testbed.pair(mtu=9000) as tb:
        with load_collection(load_object(OBJ / "frags.o", prog_type="xdp")) as c:
            att = tb.call("sink", xdp.attach, "veth1", c.programs["frags_prog"], "native")
            tb.call("sink", att.detach)
        plain = load_object(OBJ / "multi.o", prog_type="xdp.frags").only("first_pass")
        with load_collection(plain) as c, pytest.raises(XdpError, match="(?i)mtu"):
            tb.call("sink", xdp.attach, "veth1", c.programs["first_pass"], "native")


def test_no_btf_attach_target_is_refused_before_the_kernel() -> None:
    with pytest.raises(BtfError, match="program 'no_target' .section 'fentry'.: no BTF-based"
                                       " attach target is specified"):
        load_collection(load_object(OBJ / "btf_attach.o").only("no_target"))
    with pytest.raises(BtfError, match="program 'missing_target' .section 'fentry/pyxdp_no"
                                       "_such_function'.: kernel has no FUNC"):
        load_collection(load_object(OBJ / "btf_attach.o").only("missing_target"))


def test_iterator_attaches_to_the_bpf_iter_function() -> None:
    """``iter/bpf_map`` attaches to FUNC ``bpf_iter_bpf_map`` (libbpf's prefix for
    iterators); pyxdp looked up a FUNC ``bpf_map``, which the kernel does not have."""
    from pyxdp.btf import Kind, load_vmlinux
    from pyxdp.kernel.loader import _attach_btf_id

    vmlinux = load_vmlinux()
    assert not vmlinux.find("bpf_map", Kind.FUNC)
    s = load_object(OBJ / "btf_attach.o")
    assert _attach_btf_id(s.programs["map_iter"], vmlinux) == vmlinux.find(
        "bpf_iter_bpf_map", Kind.FUNC)[0]
    with load_collection(s.only("map_iter")) as c:      # and the kernel takes it
        info = c.programs["map_iter"].info()
        assert info.type == ProgType.TRACING and info.name == "map_iter"


def test_program_refused_by_policy_is_named() -> None:
    """An EPERM on BPF_PROG_LOAD (this sandbox's answer to fentry programs; elsewhere a
    policy) says which program, as libbpf's "prog 'X': failed to load" does."""
    s = load_object(OBJ / "btf_attach.o").only("known_target")
    try:
        load_collection(s).close()
    except BpfError as e:
        if e.errno != errno.EPERM:
            raise
        assert "program 'known_target' (section 'fentry/bpf_fentry_test1', type tracing)" in (
            str(e))
        assert e.command == "BPF_PROG_LOAD"
    else:
        pytest.skip("this kernel loads fentry programs: no policy refusal to name")


def write_results(path: Path = RESULTS) -> int:
    """Run every case (root) and write the outcome table; returns the failures."""
    from pyxdp.kernel import ensure_bpffs

    root = os.path.join(ensure_bpffs(), f"pyxdp-corpus-{secrets.token_hex(4)}")
    os.mkdir(root)
    rows, failures = [], 0
    try:
        for p, t in CASES:
            o = run_case(p, t, root)
            try:
                verdict = check(o)
            except AssertionError as e:
                verdict, failures = f"**MISMATCH**: {e}".replace("\n", " "), failures + 1
            ours = ("loads" if o.error is None
                    else f"{type(o.error).__name__}: {str(o.error).splitlines()[0]}")
            theirs = ("loads" if o.ref.ok else f"crash (signal {-o.ref.returncode})"
                      if o.ref_crashed else o.ref_headline())
            src = "Debian libxdp1" if p in DEBIAN else "tests/data/obj"
            rows.append(f"| {Path(p).name} | {src} | {t or ''} | {_cell(theirs)} |"
                        f" {_cell(ours)} | {_cell(verdict)} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    bt = subprocess.run(["bpftool", "version"], capture_output=True, text=True).stdout
    text = "\n".join([
        "# Loader corpus: pyxdp vs `bpftool prog loadall`", "",
        "Generated by `tests/kernel/test_loader_corpus.py` (run as a script); the test of"
        " the same name asserts every row.  Reference: "
        + " / ".join(ln.strip() for ln in bt.splitlines()[:2])
        + f"; kernel {os.uname().release}.", "",
        "| object | from | type | bpftool | pyxdp | verdict |",
        "| --- | --- | --- | --- | --- | --- |", *rows, "",
        f"{len(rows)} cases, {failures} mismatches.", ""])
    path.write_text(text)
    return failures


def _cell(text: str, limit: int = 260) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(1 if write_results() else 0)
