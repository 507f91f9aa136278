"""Pass 2, the dialect check: reject syntax outside the dialect before anything is typed.

Each rejected construct gets a message that says what to write instead; the table
:data:`UNSUPPORTED` (also rendered in the package docs and tested one by one) lists them.
Semantic limits (unknown functions, recursion, signed division...) are found by typing.
"""

from __future__ import annotations

import ast

from pyxdp.compiler.frontend import ModuleInfo

# node type -> (what, what to write instead)
_REJECT: dict[type, tuple[str, str]] = {
    ast.List: ("lists", "use a fixed array field (u8[N]) of a Struct or a map"),
    ast.ListComp: ("comprehensions", "use a for loop over range(N)"),
    ast.SetComp: ("comprehensions", "use a for loop over range(N)"),
    ast.DictComp: ("comprehensions", "use a for loop over range(N)"),
    ast.GeneratorExp: ("generators", "use a for loop over range(N)"),
    ast.Dict: ("dicts", "declare a HashMap at module level"),
    ast.Set: ("sets", "declare a HashMap at module level"),
    ast.ClassDef: ("classes inside a program", "declare Struct classes at module level"),
    ast.FunctionDef: ("nested functions", "define helper functions at module level"),
    ast.Lambda: ("lambda", "define a helper function at module level"),
    ast.Try: ("try/except (exceptions)", "check values with if and return a verdict"),
    ast.Raise: ("raise (exceptions)", "return a verdict such as XDP_ABORTED"),
    ast.Yield: ("generators (yield)", "return a value"),
    ast.YieldFrom: ("generators (yield)", "return a value"),
    ast.Await: ("await", "programs are synchronous"),
    ast.Global: ("global statements (global mutation)",
                 "keep mutable state in a map (ArrayMap/HashMap)"),
    ast.Nonlocal: ("nonlocal", "pass values as arguments and return results"),
    ast.Delete: ("del", "use map.delete(key) for map entries"),
    ast.Import: ("import inside a program", "import at module level"),
    ast.ImportFrom: ("import inside a program", "import at module level"),
    ast.Assert: ("assert", "use if ...: return XDP_ABORTED"),
    ast.JoinedStr: ("f-strings (strings)", "use trace_printk(\"fmt %d\", value)"),
    ast.Starred: ("starred arguments", "pass arguments one by one"),
    ast.NamedExpr: ("assignment expressions (:=)", "assign on its own line"),
    ast.Slice: ("slices", "index one element at a time or use ctx.load(T, off)"),
    ast.Match: ("match statements", "use if/elif"),
    ast.AsyncFor: ("async for", "use for i in range(N)"),
    ast.AsyncWith: ("async with", "call the helpers directly"),
}

UNSUPPORTED: list[tuple[str, str, str]] = [
    # (construct, example statement, fragment of the message)
    ("float", "x = 1.5", "floating point"),
    ("string", "s = 'abc'", "strings"),
    ("list", "x = [1, 2]", "lists"),
    ("dict", "x = {}", "dicts"),
    ("set", "x = {1}", "sets"),
    ("class in body", "class A: pass", "classes inside a program"),
    ("nested function", "def f(): pass", "nested functions"),
    ("try/except", "try:\n        pass\n    except Exception:\n        pass", "exceptions"),
    ("raise", "raise ValueError()", "exceptions"),
    ("with", "with ctx:\n        pass", "with statements take a SpinLock"),
    ("lambda", "f = lambda: 1", "lambda"),
    ("generator", "x = sum(i for i in range(3))", "generators"),
    ("comprehension", "x = [i for i in range(3)]", "comprehensions"),
    ("yield", "yield 1", "generators"),
    ("power", "x = ctx.ingress_ifindex ** 2", "'**'"),
    ("true division", "x = ctx.ingress_ifindex / 2", "'/'"),
    ("signed division by variable", "x = i64(ctx.ingress_ifindex) // i64(ctx.rx_queue_index)",
     "signed division"),
    ("unknown function", "x = foo(1)", "unknown function"),
    ("print", "print(1)", "unknown function"),
    ("recursion", "recurse(1)", "recursion"),
    ("unbounded while", "while ctx.ingress_ifindex:\n        pass", "unbounded while"),
    ("global mutation", "global COUNT", "global statements"),
    ("assigning a module constant", "XDP_DROP = 3", "module-level name"),
    ("for over non-range", "for x in ctx:\n        pass", "range"),
    ("del", "del x", "del"),
    ("import", "import os", "import inside a program"),
    ("assert", "assert ctx", "assert"),
    ("f-string", "x = f'{1}'", "f-strings"),
    ("walrus", "if (x := 1):\n        pass", "assignment expressions"),
    ("slice", "x = ctx[1:2]", "slices"),
    ("match", "match 1:\n        case 1:\n            pass", "match statements"),
    ("field of unchecked ref", "c = ctx.cursor()\n    eth = c.parse(Ethernet)\n    x = eth.proto",
     "may be None"),
    ("unknown attribute", "x = ctx.foo", "has no attribute"),
    ("for-else", "for i in range(2):\n        pass\n    else:\n        pass", "else"),
    ("keyword arguments to a helper", "x = twice(n=1)", "keyword arguments"),
    ("discarded checksum", "csum_replace2(1, 2, 3)", "is discarded"),
    ("discarded byte swap", "bswap32(ctx.ingress_ifindex)", "is discarded"),
    ("discarded conversion", "u16(ctx.ingress_ifindex)", "is discarded"),
    ("discarded packet load", "ctx.load(u32, 0)", "is discarded"),
]


class DialectChecker(ast.NodeVisitor):
    """Walks one function body; raises at the first construct outside the dialect."""

    def __init__(self, info: ModuleInfo) -> None:
        self.info = info

    def check_function(self, fn: ast.FunctionDef) -> None:
        a = fn.args
        if a.vararg or a.kwarg or a.kwonlyargs or a.defaults or a.posonlyargs:
            raise self.info.error(fn, "only plain positional parameters are supported",
                                  "def helper(a, b): ...")
        for stmt in fn.body:
            self.visit(stmt)

    def generic_visit(self, node: ast.AST) -> None:
        bad = _REJECT.get(type(node))
        if bad is not None:
            raise self.info.error(node, f"{bad[0]} are not supported in programs"
                                  if bad[0].endswith("s") or "(" in bad[0]
                                  else f"{bad[0]} is not supported in programs", bad[1])
        super().generic_visit(node)

    def visit_With(self, node: ast.With) -> None:
        """``with v.lock:`` (a SpinLock field of a map value) is the only with statement:
        one item, no ``as``, and a body that always reaches its end, so the unlock runs."""
        if len(node.items) != 1 or node.items[0].optional_vars is not None:
            raise self.info.error(node, "with statements take one SpinLock field of a map"
                                  " value, without 'as'", "with v.lock:")
        for sub in ast.walk(ast.Module(body=node.body, type_ignores=[])):
            if isinstance(sub, ast.Return):
                raise self.info.error(sub, "return inside a locked section (the lock must be"
                                      " released first)", "set a variable, return after the"
                                      " with block")
            if isinstance(sub, ast.With):
                raise self.info.error(sub, "nested with: a program holds one bpf_spin_lock"
                                      " at a time", "take the locks one after another")
        _check_loop_exits(self.info, node.body)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        v = node.value
        if isinstance(v, float | complex):
            raise self.info.error(node, "floating point numbers are not supported",
                                  "use integers (fixed point if needed)")
        if isinstance(v, str | bytes):
            raise self.info.error(node, "strings are not supported here",
                                  "strings only appear as trace_printk's format or ip4('a.b.c.d')")

    def visit_Expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # a docstring
        self.visit(node.value)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Name) and f.id in ("trace_printk", "ip4") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                for a in node.args[1:]:
                    self.visit(a)
                return
        if any(k.arg is None for k in node.keywords):
            raise self.info.error(node, "**kwargs are not supported", "pass keywords one by one")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Div):
            raise self.info.error(node, "true division '/' is not supported (no floats)",
                                  "use floor division '//' on unsigned integers")
        if isinstance(node.op, ast.MatMult):
            raise self.info.error(node, "'@' is not supported")
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        if node.orelse:
            raise self.info.error(node.orelse[0], "for/else is not supported",
                                  "use a flag variable")
        it = node.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name)
                and it.func.id == "range" and 1 <= len(it.args) <= 3 and not it.keywords):
            raise self.info.error(it, "for loops must iterate over range(N) with a constant"
                                  " bound", "for i in range(8): ...")
        if not isinstance(node.target, ast.Name):
            raise self.info.error(node.target, "the loop variable must be a plain name")
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        if node.orelse:
            raise self.info.error(node.orelse[0], "while/else is not supported",
                                  "use a flag variable")
        if bounded_while(node) is None:
            raise self.info.error(node, "unbounded while loop: the verifier needs a provable"
                                  " bound", "use for i in range(N), or `while i < N:` with"
                                  " `i += 1` in the body")
        self.generic_visit(node)


def bounded_while(node: ast.While) -> str | None:
    """The counter of ``while i < N [and ...]:`` whose body ends with ``i += k`` (k > 0)
    and never assigns ``i`` otherwise; None when no bound can be proven this way."""
    test = node.test
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        test = test.values[0]
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Lt | ast.LtE) and isinstance(test.left, ast.Name)):
        return None
    name = test.left.id
    last = node.body[-1] if node.body else None
    if not (isinstance(last, ast.AugAssign) and isinstance(last.op, ast.Add)
            and isinstance(last.target, ast.Name) and last.target.id == name
            and isinstance(last.value, ast.Constant) and isinstance(last.value.value, int)
            and last.value.value > 0):
        return None
    for sub in node.body[:-1]:
        for n in ast.walk(sub):
            if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store):
                return None
            if isinstance(n, ast.AugAssign) and isinstance(
                    n.target, ast.Name) and n.target.id == name:
                return None
            if isinstance(n, ast.Continue):
                return None     # would skip the increment
    return name


def check_function(info: ModuleInfo, fn: ast.FunctionDef) -> None:
    DialectChecker(info).check_function(fn)


def _check_loop_exits(info: ModuleInfo, body: list[ast.stmt]) -> None:
    """No break/continue in a locked section that would leave it (outside an inner loop)."""
    for stmt in body:
        if isinstance(stmt, ast.Break | ast.Continue):
            raise info.error(stmt, f"{'break' if isinstance(stmt, ast.Break) else 'continue'}"
                             " would leave a locked section without releasing the lock",
                             "set a flag; leave the loop after the with block")
        if isinstance(stmt, ast.For | ast.While):
            continue                      # its own break/continue stay inside
        for field in ("body", "orelse"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list):
                _check_loop_exits(info, inner)
