"""Read BPF ELF objects (what ``clang -target bpf`` writes) into pure specs.

::

    spec = load_object("prog.o")           # ElfError/BtfError on anything malformed
    spec.programs["xdp_main"].instructions
    set_variable(spec, "ret_action", 1)    # .rodata before load
"""

from pyxdp.elf._maps import internal_map_name, parse_btf_map_def
from pyxdp.elf._object import load_object, object_name
from pyxdp.elf._sections import SECTION_TABLE, SectionKind, classify_section, section_names
from pyxdp.elf._variables import get_variable, set_variable

__all__ = [
    "SECTION_TABLE", "SectionKind", "classify_section", "get_variable", "internal_map_name",
    "load_object", "object_name", "parse_btf_map_def", "section_names", "set_variable",
]
