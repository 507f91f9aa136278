"""`pyxdp attach/status/detach` against a real namespace, as a user would type them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pyxdp import testbed, xdp

pytestmark = [pytest.mark.netns, pytest.mark.kernel]
DROP_OBJ = os.path.join(os.path.dirname(__file__), "..", "data", "obj")


def pyxdp(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyxdp", *argv], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def bed():
    with testbed.pair() as tb:
        yield tb


@pytest.fixture
def drop_object() -> str:
    """A committed clang-built test object with exactly one XDP program (global_data.o;
    the loader-fidelity objects next to it need externs, arenas or refusals)."""
    from pyxdp.elf import load_object

    for name in ("global_data.o",):
        path = os.path.join(DROP_OBJ, name)
        spec = load_object(path)
        xdp_progs = [p for p in spec.programs.values() if p.type == 6]
        if len(xdp_progs) == 1 and not any(m.pinning for m in spec.maps.values()):
            return path
    pytest.fail("no single-program XDP object in tests/data/obj")


@pytest.mark.parametrize("link", [True, False])
def test_attach_status_detach(bed, drop_object: str, link: bool) -> None:
    ns = bed.ns_name("sink")
    extra = [] if link else ["--no-link"]
    pin_root = f"/sys/fs/bpf/pyxdp-test-{os.getpid()}"
    r = pyxdp("attach", "veth1", drop_object, "--netns", ns, "--mode", "generic",
              "--pin-root", pin_root, *extra)
    assert r.returncode == 0, r.stderr
    assert "attached" in r.stdout and "generic" in r.stdout
    st = bed.call("sink", xdp.status, "veth1")
    assert len(st.attachments) == 1 and (st.attachments[0].link_id > 0) == link
    r = pyxdp("status", "veth1", "--netns", ns, "--json")
    rows = json.loads(r.stdout)
    assert rows[0]["attachments"][0]["prog_id"] == st.attachments[0].prog_id
    if link:     # pinned by Collection.pin's rule, under <root>/<iface>@netns<inode>
        (where,) = [os.path.join(pin_root, d) for d in os.listdir(pin_root)]
        assert os.path.basename(where).startswith("veth1@netns")
        names = os.listdir(where)
        prog = st.attachments[0].prog_name
        assert prog in names and f"{prog}_link" in names
    else:
        assert not os.path.exists(pin_root)
    r = pyxdp("detach", "veth1", "--netns", ns, "--pin-root", pin_root)
    assert r.returncode == 0 and "detached" in r.stdout
    assert bed.call("sink", xdp.status, "veth1").attachments == ()
    assert not os.path.exists(pin_root)


def test_attach_detach_json(bed, drop_object: str) -> None:
    ns = bed.ns_name("sink")
    pin_root = f"/sys/fs/bpf/pyxdp-test-j{os.getpid()}"
    r = pyxdp("-j", "attach", "veth1", drop_object, "--netns", ns, "--mode", "generic",
              "--pin-root", pin_root)
    assert r.returncode == 0, r.stderr
    att = json.loads(r.stdout)
    st = bed.call("sink", xdp.status, "veth1")
    assert (att["prog_id"], att["link_id"]) == (st.attachments[0].prog_id,
                                                st.attachments[0].link_id)
    assert att["mode"] == "generic" and att["via"] == "bpf_link"
    assert os.path.isdir(att["pin_dir"]) and att["pin_dir"].startswith(pin_root)
    r = pyxdp("detach", "veth1", "--netns", ns, "--pin-root", pin_root, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [a["prog_id"] for a in d["detached"]] == [att["prog_id"]]
    r = pyxdp("detach", "veth1", "--netns", ns, "--pin-root", pin_root, "--json")
    assert json.loads(r.stdout) == {"iface": "veth1", "detached": []}
    assert not os.path.exists(pin_root)


def test_errors_are_one_clear_line(bed, drop_object: str, tmp_path) -> None:
    ns = bed.ns_name("sink")
    r = pyxdp("attach", "nosuch0", drop_object, "--netns", ns)
    assert r.returncode == 1 and "no such interface 'nosuch0'" in r.stderr
    bad = tmp_path / "bad.o"
    bad.write_bytes(b"not an elf at all")
    r = pyxdp("attach", "veth1", str(bad), "--netns", ns)
    assert r.returncode == 1 and "ELF" in r.stderr and "Traceback" not in r.stderr
    r = pyxdp("attach", "veth1", drop_object, "--netns", "pyxdp-no-such-ns")
    assert r.returncode == 1 and "no network namespace" in r.stderr
    r = pyxdp("attach", "veth1", drop_object, "--netns", ns, "--mode", "turbo")
    assert r.returncode == 2
    r = pyxdp("attach", "veth1", os.path.join(DROP_OBJ, "multi.o"), "--netns", ns)
    assert r.returncode == 1 and "has 3 XDP programs" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_trafficgen_cli_sends_what_the_sink_counts() -> None:
    from pyxdp.asm import programs as progs
    from pyxdp.isa import XdpAction
    from pyxdp.kernel import Map, Program

    with testbed.pair() as tb:
        sink = tb.interfaces[("sink", "veth1")]
        m = Map.create(progs.counters_spec())
        p = Program.load(progs.xdp_count(XdpAction.DROP), maps={progs.COUNTERS: m})
        att = tb.call("sink", xdp.attach, "veth1", p, "native")
        try:
            r = pyxdp("trafficgen", "veth0", "--netns", tb.ns_name("gen"), "--count",
                      "100000", "--dst-mac", sink.mac, "--proto", "tcp-syn", "--sources",
                      "100", "--ports", "10", "--json")
            assert r.returncode == 0, r.stderr
            rep = json.loads(r.stdout)
            assert rep["sent"] == 100_000 and rep["pps"] > 0
            assert progs.read_counters(m)[0] >= 100_000
        finally:
            tb.call("sink", att.detach)
            p.close()
            m.close()
        r = pyxdp("trafficgen", "veth0", "--netns", tb.ns_name("gen"), "--dst", "10.1.1.1")
        assert r.returncode == 1 and "outside 198.18.0.0/15" in r.stderr


def test_status_warns_about_redirect_targets(bed) -> None:
    from pyxdp.abi import MapType, ProgType
    from pyxdp.asm import Builder
    from pyxdp.kernel import Map, Program
    from pyxdp.maps import MapSpec
    from pyxdp.spec import ProgramSpec

    b = Builder().ld_map_fd(1, "tx").mov64(2, 0).mov64(3, 0).call("redirect_map").exit()
    spec = ProgramSpec("redir", ProgType.XDP, b.build(), map_refs=b.spec_map_refs())
    target = bed.interfaces[("sink", "veth1")].ifindex
    with Map.create(MapSpec("tx", MapType.DEVMAP, 4, 4, 4)) as dm:
        dm[0] = target
        with Program.load(spec, maps={"tx": dm}) as p:
            att = bed.call("sink", xdp.attach, "veth1", p, "native")
            try:
                r = pyxdp("status", "veth1", "--netns", bed.ns_name("sink"), "--json")
                warnings = json.loads(r.stdout)[0]["warnings"]
                assert len(warnings) == 1 and "veth1 is a veth" in warnings[0]
                r = pyxdp("status", "veth1", "--netns", bed.ns_name("sink"))
                assert "warning" in r.stdout and "peer runs an XDP program" in r.stdout
                line = next(ln for ln in r.stdout.splitlines() if ln.startswith("veth1"))
                assert "redir" in line and "native" in line
            finally:
                bed.call("sink", att.detach)


def test_attach_under_ip_netns_exec_is_refused(bed, drop_object: str) -> None:
    """`ip netns exec NS pyxdp attach ...` runs in a private mount namespace whose bpffs
    dies with the command, and the pinned link with it: refused with the reason and the
    supported way, and nothing stays attached; `--netns NS` from here keeps it attached
    after the command exits."""
    ns = bed.ns_name("sink")
    pin_root = f"/sys/fs/bpf/pyxdp-test-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "pyxdp", "attach",
                        "veth1", drop_object, "--mode", "generic", "--pin-root", pin_root],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "private to this process's mount namespace" in lines[0]
    assert "--netns" in lines[0]
    assert not bed.call("sink", xdp.status, "veth1").attachments
    r = pyxdp("attach", "veth1", drop_object, "--netns", ns, "--mode", "generic",
              "--pin-root", pin_root)
    assert r.returncode == 0, r.stderr
    try:      # the command has exited: the pin holds the attachment
        assert len(bed.call("sink", xdp.status, "veth1").attachments) == 1
    finally:
        r = pyxdp("detach", "veth1", "--netns", ns, "--pin-root", pin_root)
        assert r.returncode == 0, r.stderr
    assert not os.path.exists(pin_root)


def test_status_without_privilege_says_why(bed, drop_object: str) -> None:
    """Without CAP_BPF/CAP_SYS_ADMIN the program's name cannot be read: the attachment is
    still listed (netlink tells its id) and stderr says why the name is missing."""
    ns = bed.ns_name("sink")
    r = pyxdp("attach", "veth1", drop_object, "--netns", ns, "--mode", "generic", "--no-link")
    assert r.returncode == 0, r.stderr
    try:
        r = subprocess.run(["ip", "netns", "exec", ns, "setpriv", "--bounding-set=-all",
                            "--inh-caps=-all", "--ambient-caps=-all", sys.executable, "-m",
                            "pyxdp", "status", "veth1", "--json"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        (row,) = json.loads(r.stdout)
        assert [a["prog_name"] for a in row["attachments"]] == ["?"]
        assert "needs root or CAP_SYS_ADMIN / CAP_BPF" in r.stderr
    finally:
        assert pyxdp("detach", "veth1", "--netns", ns).returncode == 0


def test_generic_detach_refuses_an_apps_link(bed, tmp_path) -> None:
    """`pyxdp detach` of an interface the filter holds is refused (the filter's state
    would say "attached" while nothing is), naming the app's own detach; --force does it;
    the filter's own detach still works on a healthy filter."""
    import secrets

    ns = bed.ns_name("sink")
    base = f"/sys/fs/bpf/pyxdpt-{secrets.token_hex(4)}"
    generic = ["--netns", ns, "--pin-root", f"{base}/pyxdp"]
    app = ["--netns", ns, "--pin-root", f"{base}/pyxdp-filter",
           "--state-root", str(tmp_path / "state")]
    rules = tmp_path / "rules.toml"
    rules.write_text('[filter]\ndefault = "allow"\n\n[[rule]]\nname = "n"\n'
                     'src = ["198.19.0.0/16"]\n')
    try:
        r = pyxdp("filter", "attach", "veth1", "--rules", str(rules), "--mode", "generic",
                  *app)
        assert r.returncode == 0, r.stderr
        r = pyxdp("detach", "veth1", *generic)
        assert r.returncode == 1
        (line,) = r.stderr.strip().splitlines()
        assert "attached by `pyxdp filter`" in line and "pyxdp filter detach veth1" in line
        assert len(bed.call("sink", xdp.status, "veth1").attachments) == 1
        assert pyxdp("filter", "list", "veth1", *app).returncode == 0
        r = pyxdp("filter", "detach", "veth1", *app)
        assert r.returncode == 0, r.stderr
        assert not bed.call("sink", xdp.status, "veth1").attachments
        # forced: the generic detach takes it, and says what it detached
        r = pyxdp("filter", "attach", "veth1", "--rules", str(rules), "--mode", "generic",
                  *app)
        assert r.returncode == 0, r.stderr
        r = pyxdp("detach", "veth1", "--force", *generic)
        assert r.returncode == 0, r.stderr
        assert "detached" in r.stdout
        assert not bed.call("sink", xdp.status, "veth1").attachments
    finally:
        pyxdp("filter", "detach", "veth1", "--force", *app)
        import shutil
        shutil.rmtree(base, ignore_errors=True)


def test_status_reads_a_libxdp_dispatcher(bed) -> None:
    """A libxdp v2 dispatcher (Debian's xdp-dispatcher.o, configured as xdp-loader would
    for two programs) on the interface, its components pinned where libxdp pins them:
    `pyxdp status` shows the run priorities, the chain-call actions and the components.
    (Attaching components needs freplace, which this kernel's policy may refuse, so the
    components are pinned beside it rather than freplace-attached.)"""
    import secrets
    import shutil

    from pyxdp.elf import load_object, set_variable
    from pyxdp.kernel import load_collection
    from pyxdp.xdp._libxdp import CONFIG, DISPATCHER_MAGIC

    path = "/usr/lib/x86_64-linux-gnu/bpf/xdp-dispatcher.o"
    if not os.path.exists(path):
        pytest.fail(f"{path} missing: scripts/install.sh installs xdp-tools (libxdp1)")
    spec = load_object(path)
    pass_mask = 1 << 2
    conf = CONFIG.pack(DISPATCHER_MAGIC, 2, 2, 0, *([pass_mask, pass_mask] + [0] * 8),
                       *([10, 20] + [0] * 8), *([0] * 10))
    set_variable(spec, "conf", conf)
    root = f"/sys/fs/bpf/pyxdpt-{secrets.token_hex(4)}/xdp"
    stages = load_object(os.path.join(DROP_OBJ, "chain_stages.o"))

    def run() -> dict:
        with load_collection(spec) as disp, load_collection(stages) as comps:
            att = xdp.attach("veth1", disp.programs["xdp_dispatcher"], "generic",
                             use_link=False)
            try:
                ifindex = xdp.ifindex_of("veth1")
                pin_dir = os.path.join(root, f"dispatch-{ifindex}-"
                                       f"{disp.programs['xdp_dispatcher'].id}")
                os.makedirs(pin_dir)
                comps.programs["stage_pass"].pin(os.path.join(pin_dir, "prog0-prog"))
                comps.programs["stage_drop"].pin(os.path.join(pin_dir, "prog1-prog"))
                r = pyxdp("status", "veth1", "--json", "--libxdp-root", root)
                assert r.returncode == 0, r.stderr
                text = pyxdp("status", "veth1", "--libxdp-root", root).stdout
                return {"doc": json.loads(r.stdout), "text": text}
            finally:
                att.detach()

    try:
        got = bed.call("sink", run)
    finally:
        shutil.rmtree(os.path.dirname(root), ignore_errors=True)
    (row,) = got["doc"]
    (a,) = row["attachments"]
    assert a["dispatcher"] and a["libxdp"]["version"] == 2
    comps = a["libxdp"]["components"]
    assert [(c["slot"], c["run_prio"], c["prog_name"]) for c in comps] == [
        (0, 10, "stage_pass"), (1, 20, "stage_drop")]
    assert all(c["chain_call_actions"] == ["pass"] for c in comps)
    assert "prio 10: stage_pass (continues on pass)" in got["text"]
