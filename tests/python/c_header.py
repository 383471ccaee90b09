"""Read the declarations of colddiff.h and colddiff_experimental.h, and hold
a ctypes signature table to them (used by test_binding.py).

Only what these headers use is understood: `CD_API` prototypes, `typedef
enum`, anonymous `enum { ... }`, `typedef struct x x;` (opaque),
`typedef struct x { ... } x;`, function-pointer typedefs and `#define NAME
number`. Anything else in a prototype (a type this module does not know)
is reported as a problem, never guessed.
"""
import ctypes
import re

# The fixed-width C types and their ctypes. int32_t and every enum are a C
# int (ctypes.c_int32 is ctypes.c_int on every platform libcolddiff runs on).
SCALARS = {
    "int64_t": ctypes.c_int64,
    "int32_t": ctypes.c_int32,
    "uint64_t": ctypes.c_uint64,
    "uint8_t": ctypes.c_uint8,
    "double": ctypes.c_double,
    "float": ctypes.c_float,
    "size_t": ctypes.c_size_t,
    "int": ctypes.c_int,
}
# Buffers the binding passes by address (array.array, numpy, ctypes arrays).
BY_ADDRESS = {"void", "float", "uint8_t"}


class CType:
    """A parsed C type: base name and pointer depth (const dropped)."""

    def __init__(self, base, depth):
        self.base, self.depth = base, depth

    def __repr__(self):
        return self.base + " " + "*" * self.depth if self.depth else self.base

    def __eq__(self, other):
        return (self.base, self.depth) == (other.base, other.depth)


class Header:
    """Everything declared by a set of header texts."""

    def __init__(self, texts):
        self.functions = {}      # name -> (CType, [CType])
        self.enums = {}          # typedef name -> {member: value}
        self.anonymous = {}      # member -> value, from `enum { ... };`
        self.opaque = set()      # typedef struct x x;
        self.structs = {}        # name -> [(field, CType)]
        self.callbacks = {}      # name -> (CType, [CType])
        self.macros = {}
        self.typed_macros = {}   # experimental key -> its enum type
        for text in texts:
            self._read(text)

    def _value(self, expr, known):
        expr = expr.strip()
        if re.fullmatch(r"-?\d+", expr):
            return int(expr)
        if expr in known:
            return known[expr]
        if expr in self.macros:
            return self.macros[expr]
        raise ValueError(f"cannot evaluate enum value {expr!r}")

    def _members(self, body):
        out = {}
        for item in body.split(","):
            item = item.strip()
            if not item:
                continue
            if "=" in item:
                name, expr = (x.strip() for x in item.split("=", 1))
                out[name] = self._value(expr, out)
            else:
                out[item] = (list(out.values())[-1] + 1) if out else 0
        return out

    def _read(self, text):
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"//[^\n]*", " ", text)
        for name, value in re.findall(r"^\s*#\s*define\s+(\w+)\s+(-?\d+)\s*$", text, re.M):
            self.macros[name] = int(value)
        # Experimental keys: `#define KEY ((cd_x_option)EXPR)`, a value of a
        # key enum declared outside its body.
        for name, ctype, expr in re.findall(
                r"^\s*#\s*define\s+(\w+)\s+\(\((\w+)\)\s*(\w+)\)\s*$", text, re.M):
            self.anonymous[name] = self._value(expr, {})
            self.typed_macros[name] = ctype
        text = re.sub(r"^\s*#[^\n]*(?:\\\n[^\n]*)*", " ", text, flags=re.M)
        text = re.sub(r'extern\s+"C"\s*\{', " ", text)
        for body, name in re.findall(r"typedef\s+enum\s+\w*\s*\{(.*?)\}\s*(\w+)\s*;", text, re.S):
            self.enums[name] = self._members(body)
        text_no_typedef_enums = re.sub(r"typedef\s+enum\s+\w*\s*\{.*?\}\s*\w+\s*;", " ", text,
                                       flags=re.S)
        for body in re.findall(r"(?<![\w])enum\s*\{(.*?)\}\s*;", text_no_typedef_enums, re.S):
            self.anonymous.update(self._members(body))
        for tag, name in re.findall(r"typedef\s+struct\s+(\w+)\s+(\w+)\s*;", text):
            self.opaque.add(name)
        for body, name in re.findall(r"typedef\s+struct\s+\w*\s*\{(.*?)\}\s*(\w+)\s*;", text, re.S):
            fields = []
            for decl in body.split(";"):
                decl = decl.strip()
                if not decl:
                    continue
                first, *more = (d.strip() for d in decl.split(","))
                ctype, fname = parse_decl(first)
                fields.append((fname, ctype))
                for extra in more:  # `double lo, hi;`
                    m = re.fullmatch(r"(\**)\s*(\w+)", extra)
                    fields.append((m.group(2), CType(ctype.base,
                                                     ctype.depth - first.count("*")
                                                     + len(m.group(1)))))
            self.structs[name] = fields
        for ret, name, params in re.findall(
                r"typedef\s+([\w\s\*]+?)\s*\(\s*\*\s*(\w+)\s*\)\s*\((.*?)\)\s*;", text, re.S):
            self.callbacks[name] = (parse_decl(ret + " x")[0], parse_params(params))
        for ret, name, params in re.findall(r"CD_API\s+([\w\s\*]+?)\s*\b(cd_\w+)\s*\((.*?)\)\s*;",
                                            text, re.S):
            self.functions[name] = (parse_decl(ret + " x")[0], parse_params(params))

    def is_enum(self, name):
        return name in self.enums


def parse_decl(decl):
    """`const cd_tensor *x` -> (CType("cd_tensor", 1), "x"); arrays are
    pointers (`int64_t shape[3]`)."""
    decl = " ".join(decl.replace("*", " * ").split())
    depth = 0
    m = re.search(r"\[\s*\w*\s*\]\s*$", decl)
    if m:
        depth += 1
        decl = decl[:m.start()].strip()
    words = [w for w in decl.split() if w not in ("const", "struct", "enum")]
    depth += words.count("*")
    words = [w for w in words if w != "*"]
    if not words:
        raise ValueError(f"cannot read the declaration {decl!r}")
    if len(words) == 1:
        return CType(words[0], depth), None
    # `long double x`: a base of several words, which expected() then
    # reports as a type the rules do not cover.
    return CType(" ".join(words[:-1]), depth), words[-1]


def parse_params(params):
    params = " ".join(params.split())
    if params in ("", "void"):
        return []
    return [parse_decl(p)[0] for p in params.split(",")]


def expected(ctype, header, callbacks, structs):
    """The ctypes type the binding's rules give a C type (see _SIGNATURES in
    colddiff.py), or raise ValueError for a type the rules do not cover."""
    base, depth = ctype.base, ctype.depth
    enum = header.is_enum(base)
    if depth == 0:
        if base == "void":
            return None
        if base in SCALARS:
            return SCALARS[base]
        if enum:
            return ctypes.c_int
        if base in header.callbacks:
            if base not in callbacks:
                raise ValueError(f"no ctypes type for the callback {base}")
            return callbacks[base]
        raise ValueError(f"unknown type {ctype!r}")
    if depth == 1:
        if base == "char":
            return ctypes.c_char_p
        if base in header.opaque or base in BY_ADDRESS:
            return ctypes.c_void_p
        if base in header.structs:
            if base not in structs:
                raise ValueError(f"no ctypes Structure for {base}")
            return ctypes.POINTER(structs[base])
        if enum:
            return ctypes.POINTER(ctypes.c_int)
        if base in SCALARS:
            return ctypes.POINTER(SCALARS[base])
        raise ValueError(f"unknown pointer type {ctype!r}")
    if depth == 2 and base in header.opaque:
        return ctypes.POINTER(ctypes.c_void_p)
    raise ValueError(f"unknown type {ctype!r}")


def _name(t):
    return "None (void)" if t is None else getattr(t, "__name__", repr(t))


def _compare(what, want_ret, want_args, got_ret, got_args, header, callbacks, structs):
    problems = []
    try:
        exp_ret = expected(want_ret, header, callbacks, structs)
        exp_args = [expected(a, header, callbacks, structs) for a in want_args]
    except ValueError as e:
        return [f"{what}: {e}"]
    if got_ret is not exp_ret:
        problems.append(f"{what}: returns {_name(got_ret)}, the header says {want_ret!r} "
                        f"({_name(exp_ret)})")
    if len(got_args) != len(exp_args):
        problems.append(f"{what}: {len(got_args)} arguments, the header has {len(exp_args)}")
    else:
        for i, (g, e, c) in enumerate(zip(got_args, exp_args, want_args)):
            if g is not e:
                problems.append(f"{what}: argument {i} is {_name(g)}, the header says {c!r} "
                                f"({_name(e)})")
    return problems


def check_table(header, table, callbacks, structs):
    """Every problem of a signature table (name -> (restype, [argtypes]))
    against the header, as a list of strings (empty: all fine): functions
    without an entry, entries the header does not declare, and argument
    counts and types that differ."""
    problems = []
    for name in sorted(set(header.functions) - set(table)):
        problems.append(f"{name}: declared in the header, missing from the table")
    for name in sorted(set(table) - set(header.functions)):
        problems.append(f"{name}: in the table, not declared in the header")
    for name in sorted(set(table) & set(header.functions)):
        ret, args = header.functions[name]
        got_ret, got_args = table[name]
        problems += _compare(name, ret, args, got_ret, list(got_args), header, callbacks,
                             structs)
    return problems


def check_callbacks(header, callbacks, structs):
    """Every problem of the CFUNCTYPE types against the header's typedefs."""
    problems = []
    for name in sorted(set(header.callbacks) - set(callbacks)):
        problems.append(f"{name}: callback typedef without a ctypes type")
    for name in sorted(set(callbacks) - set(header.callbacks)):
        problems.append(f"{name}: ctypes callback type the header does not declare")
    for name in sorted(set(callbacks) & set(header.callbacks)):
        ret, args = header.callbacks[name]
        fn = callbacks[name]
        problems += _compare(name, ret, args, fn._restype_, list(fn._argtypes_), header,
                             callbacks, structs)
    return problems


def check_struct(header, name, cls, callbacks=None, structs=None):
    """Every problem of a ctypes Structure against the header's struct."""
    fields = header.structs.get(name)
    if fields is None:
        return [f"{name}: no such struct in the header"]
    got = list(cls._fields_)
    problems = []
    if [f for f, _ in got] != [f for f, _ in fields]:
        problems.append(f"{name}: fields {[f for f, _ in got]}, the header has "
                        f"{[f for f, _ in fields]}")
        return problems
    for (fname, gtype), (_, ctype) in zip(got, fields):
        try:
            want = expected(ctype, header, callbacks or {}, structs or {})
        except ValueError as e:
            problems.append(f"{name}.{fname}: {e}")
            continue
        if gtype is not want:
            problems.append(f"{name}.{fname}: {_name(gtype)}, the header says {ctype!r} "
                            f"({_name(want)})")
    return problems
