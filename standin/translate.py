#!/usr/bin/env python3
"""Turns one preprocessed kernel family (g++ -E of kernels/<family>.cu) into
host C++ for the stand-in. Standard library only.

What a header cannot do, this does, on the code that came from the kernel
sources (regions of the .ii whose line markers name a file under --root;
system headers are dropped, emu/device.h brings its own):

- `asm [volatile]("ptx" : outs : ins)`: each PTX instruction becomes a call
  `::emu::ptx::<mnemonic with . as _>(site, operands...)`, operands through
  the constraint accessors of emu/ptx.h. An instruction the stand-in does not
  emulate then fails to compile, naming it. A `{ }` block's `.reg`
  registers (.pred, .b32, .u32, .s32, .b64, .u64) become locals of a lambda
  run in place and an `@p` guard an `if`; `[map, {c0, c1}]` passes the map
  then the coordinates, `d|p` two destinations, `_` a sink. A form this
  script cannot read (labels, branches, other operands) stops the build
  here with the file:line.
- `__shared__` declarations: references into the block's shared memory,
  `T (&x)[N] = ::emu::shared_var<T[N]>([]{}, align, "x", site)`;
  `extern __shared__ T x[]` is the dynamic shared memory.
- `extern "C" __global__` definitions: `__global__` and `__launch_bounds__`
  removed, and a registration of each entry point (family, name, launch
  bounds, its own C++ signature) appended, so the stand-in loads a kernel
  added to kernels/ with no edit here.

Line markers are kept and every replacement keeps its line count, so compiler
messages and the sites in reports point into kernels/*.cu.

Usage: translate.py --family NAME --root DIR [--root DIR ...] IN.ii OUT.cpp
"""
import argparse
import os
import re
import sys

MARKER = re.compile(r'^#\s*(?:line\s+)?(\d+)\s+"((?:[^"\\]|\\.)*)"')


class TranslateError(Exception):
    pass


def kernel_regions(text, roots):
    """The parts of the .ii from files under `roots`, each with its marker."""
    out = []
    keep = False
    for line in text.splitlines(keepends=True):
        m = MARKER.match(line)
        if m:
            path = os.path.realpath(m.group(2).encode().decode("unicode_escape"))
            keep = any(path == r or path.startswith(r + os.sep) for r in roots)
            if keep:
                # Without their flags: the system headers between them are gone,
                # so "entering" / "returning" would not nest.
                out.append(f'# {m.group(1)} "{m.group(2)}"\n')
            continue
        if keep:
            out.append(line)
    return "".join(out)


TOKEN = re.compile(
    r"""
    (?P<pp>^[ \t]*\#[^\n]*)                       # preprocessor line (markers, pragmas)
  | (?P<ws>[ \t\r]+)
  | (?P<nl>\n)
  | (?P<str>(?:u8|u|U|L)?"(?:[^"\\\n]|\\.)*")
  | (?P<chr>(?:u8|u|U|L)?'(?:[^'\\\n]|\\.)*')
  | (?P<id>[A-Za-z_]\w*)
  | (?P<num>\.?\d(?:[\w.]|[eEpP][+-])*)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.MULTILINE,
)


class Tok:
    __slots__ = ("kind", "text", "start", "end", "file", "line")

    def __init__(self, kind, text, start, end, file, line):
        self.kind, self.text, self.start, self.end, self.file, self.line = kind, text, start, end, file, line

    def __repr__(self):
        return f"{self.kind}:{self.text!r}@{self.line}"


def tokenize(text):
    toks = []
    file, line = "<unknown>", 1
    for m in TOKEN.finditer(text):
        kind = m.lastgroup
        s = m.group()
        if kind == "pp":
            mm = MARKER.match(s.strip())
            if mm:
                file, line = mm.group(2), int(mm.group(1)) - 1  # the newline after it makes it right
            else:
                toks.append(Tok("pp", s, m.start(), m.end(), file, line))
            continue
        if kind == "nl":
            line += 1
            continue
        if kind == "ws":
            continue
        toks.append(Tok(kind, s, m.start(), m.end(), file, line))
    return toks


def c_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def site(tok):
    return f"::emu::Site{{{c_string(tok.file)}, {tok.line}}}"


def where(tok):
    return f"{tok.file}:{tok.line}"


def matching(toks, i):
    """Index of the bracket closing the one at toks[i]."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    open_, close = toks[i].text, pairs[toks[i].text]
    depth = 0
    for j in range(i, len(toks)):
        t = toks[j].text
        if toks[j].kind != "punct":
            continue
        if t == open_:
            depth += 1
        elif t == close:
            depth -= 1
            if depth == 0:
                return j
    raise TranslateError(f"{where(toks[i])}: unbalanced '{open_}'")


def split_top(toks, lo, hi, sep):
    """Token index ranges of [lo, hi) split at top-level `sep` punctuation."""
    parts, depth, start = [], 0, lo
    for j in range(lo, hi):
        t = toks[j]
        if t.kind != "punct":
            continue
        if t.text in "([{":
            depth += 1
        elif t.text in ")]}":
            depth -= 1
        elif t.text == sep and depth == 0:
            parts.append((start, j))
            start = j + 1
    parts.append((start, hi))
    return parts


class Translator:
    def __init__(self, text, family):
        self.text = text
        self.toks = tokenize(text)
        self.family = family
        self.edits = []  # (start, end, replacement)
        self.kernels = []  # (name, max_threads, min_blocks, tok)

    def src(self, lo, hi):
        """Source text of tokens [lo, hi)."""
        if lo >= hi:
            return ""
        return self.text[self.toks[lo].start : self.toks[hi - 1].end]

    def replace(self, lo, hi, new):
        """Replaces tokens [lo, hi) keeping the line count."""
        start, end = self.toks[lo].start, self.toks[hi - 1].end
        lines = self.text.count("\n", start, end)
        self.edits.append((start, end, new.replace("\n", " ") + "\n" * lines))

    def run(self):
        toks = self.toks
        i = 0
        depth = 0  # brace depth, for namespace-scope __shared__
        c_blocks = []  # brace depths of open extern "C" { blocks
        while i < len(toks):
            t = toks[i]
            if t.kind == "punct":
                if t.text == "{":
                    depth += 1
                elif t.text == "}":
                    depth -= 1
                    if c_blocks and c_blocks[-1] == depth:
                        c_blocks.pop()
                i += 1
                continue
            if t.kind == "id" and t.text == "extern" and i + 2 < len(toks):
                if toks[i + 1].text == '"C"' and toks[i + 2].text == "{":
                    c_blocks.append(depth)
            if t.kind == "id" and t.text in ("asm", "__asm__", "__asm"):
                i = self.asm(i)
                continue
            if t.kind == "id" and t.text == "__shared__":
                i = self.shared(i, depth)
                continue
            if t.kind == "id" and t.text == "__global__":
                i = self.global_(i, bool(c_blocks))
                continue
            i += 1

    # ---- inline PTX -------------------------------------------------------------
    def asm(self, i):
        toks = self.toks
        at = toks[i]
        j = i + 1
        while toks[j].kind == "id" and toks[j].text in ("volatile", "__volatile__", "inline", "goto"):
            j += 1
        if toks[j].text != "(":
            raise TranslateError(f"{where(at)}: asm without '('")
        close = matching(toks, j)
        sections = split_top(toks, j + 1, close, ":")
        tmpl_lo, tmpl_hi = sections[0]
        template = ""
        for k in range(tmpl_lo, tmpl_hi):
            if toks[k].kind != "str":
                raise TranslateError(f"{where(at)}: asm template must be string literals")
            template += bytes(toks[k].text[1:-1], "utf-8").decode("unicode_escape")
        operands = []
        for sec in sections[1:3]:
            lo, hi = sec
            if lo >= hi:
                continue
            for plo, phi in split_top(toks, lo, hi, ","):
                operands.append(self.operand(plo, phi, at, output=(sec is sections[1])))
        instructions, regs = split_instructions(template, at)
        self.regs = regs
        calls = [self.instruction(ins, operands, at) for ins in instructions]
        if not calls:
            raise TranslateError(f"{where(at)}: empty asm statement")
        if not regs and not any(c.startswith("if ") for c in calls):
            self.replace(i, close + 1, "(" + ", ".join(calls) + ")")
        else:
            # PTX registers of a { } block (.reg) become locals of a lambda run
            # in place, and a guarded instruction (@p) an if.
            decls = "".join(f"{ctype} {var} = 0; " for var, ctype in regs.values())
            self.replace(i, close + 1, "[&] { " + decls + "; ".join(calls) + "; }()")
        return close + 1

    def operand(self, lo, hi, at, output):
        toks = self.toks
        k = lo
        if toks[k].text == "[":  # [name] "constraint"(expr)
            k = matching(toks, k) + 1
        if toks[k].kind != "str" or toks[k + 1].text != "(":
            raise TranslateError(f"{where(at)}: cannot read asm operand `{self.src(lo, hi)}`")
        constraint = toks[k].text[1:-1]
        close = matching(toks, k + 1)
        expr = self.src(k + 2, close)
        letters = constraint.lstrip("=+&")
        if letters not in ("r", "l", "h", "f", "d", "n"):
            raise TranslateError(f"{where(at)}: asm constraint \"{constraint}\" is not emulated (r, l, h, f, d, n)")
        if letters == "n":
            return f"({expr})"
        kind = "out" if output else "in"
        return f"::emu::ptx::{kind}_{letters}({expr})"

    def instruction(self, ins, operands, at):
        guard = None
        m = re.fullmatch(r"@(!?)(%?%?\w+)\s+(.*)", ins)
        if m:
            reg = self.regs.get(m.group(2).replace("%%", "%"))
            if reg is None or reg[1] != "bool":
                raise TranslateError(f"{where(at)}: `{ins}` is guarded by `{m.group(2)}`, not a .pred of this block")
            guard = ("!" if m.group(1) else "") + reg[0]
            ins = m.group(3)
        mnemonic, _, rest = ins.partition(" ")
        if not re.fullmatch(r"[a-z][\w.:]*", mnemonic):
            raise TranslateError(f"{where(at)}: cannot read PTX instruction `{ins}`")
        args = [site(at)]
        for op in split_ptx_operands(rest.strip(), at):
            args.extend(self.ptx_operand(op, operands, at))
        name = mnemonic.replace("::", "__").replace(".", "_")
        call = f"::emu::ptx::{name}({', '.join(args)})"
        return f"if ({guard}) {call}" if guard else call

    def ptx_operand(self, op, operands, at):
        op = op.strip()
        if op.startswith("{"):
            if not op.endswith("}"):
                raise TranslateError(f"{where(at)}: cannot read PTX vector operand `{op}`")
            out = []
            for part in op[1:-1].split(","):
                out.extend(self.ptx_operand(part, operands, at))
            return out
        if op.startswith("[") and "," in op:
            # [tensorMap, {c0, c1}]: the map's address, then the coordinates.
            if not op.endswith("]"):
                raise TranslateError(f"{where(at)}: cannot read PTX address `{op}`")
            out = []
            for part in split_ptx_operands(op[1:-1], at):
                out.extend(self.ptx_operand(part if part.startswith("{") else "[" + part + "]", operands, at))
            return out
        if "|" in op and not op.startswith(("[", "{")):
            # elect.sync d|p: two destinations.
            out = []
            for part in op.split("|"):
                out.extend(self.ptx_operand(part, operands, at))
            return out
        if op == "_":
            return ["::emu::ptx::sink()"]
        reg = self.regs.get(op.replace("%%", "%"))
        if reg is not None:
            return [reg[0]]
        if op.startswith("["):
            m = re.fullmatch(r"\[\s*%(\d+)\s*(?:\+\s*(-?(?:0x[0-9a-fA-F]+|\d+)))?\s*\]", op)
            if not m:
                raise TranslateError(f"{where(at)}: PTX address `{op}` is not emulated ([%N] or [%N+imm])")
            ref = self.ref(int(m.group(1)), operands, at)
            return [f"({ref} + {m.group(2)})" if m.group(2) else ref]
        m = re.fullmatch(r"%(\d+)", op)
        if m:
            return [self.ref(int(m.group(1)), operands, at)]
        if re.fullmatch(r"-?(?:0x[0-9a-fA-F]+|\d+)", op):
            return [op]
        raise TranslateError(f"{where(at)}: PTX operand `{op}` is not emulated (only %N, {{...}}, [..] and integers)")

    @staticmethod
    def ref(n, operands, at):
        if n >= len(operands):
            raise TranslateError(f"{where(at)}: asm names operand %{n} but has {len(operands)}")
        return operands[n]

    # ---- __shared__ -------------------------------------------------------------
    def shared(self, i, depth):
        toks = self.toks
        at = toks[i]
        lo = i
        while lo > 0 and not (toks[lo - 1].kind == "pp" or toks[lo - 1].text in (";", "{", "}", ":")):
            lo -= 1
        hi = i
        while toks[hi].text != ";":
            if toks[hi].text in ("(", "[", "{"):
                hi = matching(toks, hi)
            hi += 1
        # Qualifiers and alignment, wherever they stand.
        align, extern, keep = "0", False, []
        k = lo
        while k < hi:
            t = toks[k]
            if t.text == "__shared__" or t.text == "static":
                k += 1
                continue
            if t.text == "extern":
                extern = True
                k += 1
                continue
            if t.text == "__align__":
                close = matching(toks, k + 1)
                align = self.src(k + 2, close)
                k = close + 1
                continue
            if t.text == "__attribute__":
                close = matching(toks, k + 1)
                m = re.fullmatch(r"\(\(\s*aligned\s*\((.*)\)\s*\)\)", self.src(k + 1, close + 1).replace("\n", " "))
                if not m:
                    raise TranslateError(f"{where(at)}: __shared__ with `{self.src(k, close + 1)}` is not emulated")
                align = m.group(1)
                k = close + 1
                continue
            keep.append(k)
            k += 1
        # The declarators, split at top-level commas.
        decls = []
        groups, cur, d = [], [], 0
        for k in keep:
            t = toks[k]
            if t.kind == "punct" and t.text in "([{":
                d += 1
            elif t.kind == "punct" and t.text in ")]}":
                d -= 1
            if t.kind == "punct" and t.text == "," and d == 0:
                groups.append(cur)
                cur = []
            else:
                cur.append(k)
        groups.append(cur)
        base = None
        for g in groups:
            if any(toks[k].text == "=" for k in g):
                raise TranslateError(f"{where(at)}: a __shared__ variable cannot have an initializer")
            first_bracket = next((n for n, k in enumerate(g) if toks[k].text == "["), len(g))
            if first_bracket == 0 or toks[g[first_bracket - 1]].kind != "id":
                raise TranslateError(f"{where(at)}: cannot read the __shared__ declaration `{self.src(lo, hi)}`")
            name = toks[g[first_bracket - 1]].text
            dims = " ".join(self.text[toks[k].start : toks[k].end] for k in g[first_bracket:])
            prefix = " ".join(toks[k].text for k in g[: first_bracket - 1])
            if base is None:
                base = prefix.rstrip("*& ")
                typ = prefix
            else:
                typ = base + " " + prefix
            if not typ.strip():
                raise TranslateError(f"{where(at)}: __shared__ `{name}` has no type")
            decls.append((typ.strip(), name, dims.strip()))
        out = []
        for typ, name, dims in decls:
            if extern:
                if dims.replace(" ", "") != "[]":
                    raise TranslateError(f"{where(at)}: extern __shared__ `{name}` must be an array of unknown size")
                expr = f"static_cast<{typ}*>(::emu::dynamic_shared({align}, {site(at)}))"
                if depth == 0:
                    out.append(f"\n#define {name} ({expr})\n")
                else:
                    out.append(f"{typ}* const {name} = {expr};")
                continue
            full = f"{typ} {dims}".strip()
            call = f"::emu::shared_var<{full}>([]{{}}, {align}, {c_string(name)}, {site(at)})"
            if depth == 0:
                out.append(f"\n#define {name} ({call})\n")
            elif dims:
                out.append(f"{typ} (&{name}){dims} = {call};")
            else:
                out.append(f"{typ}& {name} = {call};")
        if depth == 0:
            # Namespace scope: macros, on lines of their own, then a marker
            # that puts the next line back where it was.
            resync = f"# {toks[hi].line + 1} {c_string(at.file)}\n"
            text = "\n" + "".join(o.strip("\n") + "\n" for o in out) + resync
            self.edits.append((toks[lo].start, toks[hi].end, text))
        else:
            self.replace(lo, hi + 1, " ".join(out))
        return hi + 1

    # ---- __global__ -------------------------------------------------------------
    def global_(self, i, in_c_block):
        toks = self.toks
        at = toks[i]
        extern_c = in_c_block
        k = i - 1
        while k >= 0 and toks[k].kind == "id" and toks[k].text in ("static", "inline", "__forceinline__", "__noinline__"):
            k -= 1
        if k >= 1 and toks[k].text == '"C"' and toks[k - 1].text == "extern":
            extern_c = True
        self.replace(i, i + 1, "")
        j = i + 1
        max_threads, min_blocks = "0", "0"
        name = None
        while j < len(toks):
            t = toks[j]
            if t.kind == "id" and t.text == "__launch_bounds__":
                close = matching(toks, j + 1)
                args = [self.src(lo, hi) for lo, hi in split_top(toks, j + 2, close, ",")]
                max_threads = args[0]
                if len(args) > 1:
                    min_blocks = args[1]
                self.replace(j, close + 1, "")
                j = close + 1
                continue
            if t.kind == "id" and toks[j + 1].text == "(" and t.text != "__attribute__":
                name = t
                break
            if t.text in (";", "{", "}"):
                break
            j += 1
        if name is None:
            raise TranslateError(f"{where(at)}: cannot find the name of this __global__ function")
        close = matching(toks, j + 1)
        after = toks[close + 1].text if close + 1 < len(toks) else ""
        if after == "{" and extern_c:
            # Its parameter list: the registration names this overload, since a
            # device function may share the name (C++ overloads an extern "C" one).
            params = self.src(j + 2, close)
            self.kernels.append((name.text, max_threads, min_blocks, name, params))
        elif after == "{":
            print(
                f"translate.py: {where(name)}: __global__ {name.text} is not extern \"C\"; "
                "the driver cannot look it up by name, so the stand-in does not register it",
                file=sys.stderr,
            )
        return j + 1

    def output(self):
        text = self.text
        for start, end, new in sorted(self.edits, key=lambda e: e[0], reverse=True):
            text = text[:start] + new + text[end:]
        head = (
            f"// Generated by standin/translate.py from the {self.family} kernel family. Do not edit.\n"
            "#include <emu/device.h>\n"
        )
        regs = ["", '# 1 "<stand-in registration>"', "namespace {"]
        for n, (name, mt, mb, tok, params) in enumerate(self.kernels):
            regs.append(f"using emu_signature_{n} = void (*)({' '.join(params.split())});")
            regs.append(
                f"const ::emu::Registrar<static_cast<emu_signature_{n}>(&::{name})> emu_registrar_{n}({c_string(self.family)}, "
                f"{c_string(name)}, (int)({mt}), (int)({mb}), {site(tok)});"
            )
        regs.append("}  // namespace")
        return head + text + "\n".join(regs) + "\n"


REG_TYPES = {"pred": "bool", "b32": "uint32_t", "u32": "uint32_t", "s32": "int32_t", "b64": "uint64_t", "u64": "uint64_t"}


def split_instructions(template, at):
    """The instructions of a template, and the registers its { } block
    declares (`.reg .pred p;`): PTX name -> (C++ local, C++ type)."""
    out, regs = [], {}
    for part in template.replace("\n", ";").split(";"):
        part = re.sub(r"//.*", "", part).strip()
        while part.startswith("{"):  # a block's braces only scope its .reg names
            part = part[1:].strip()
        while part.endswith("}") and part.count("}") > part.count("{"):
            part = part[:-1].strip()
        if not part:
            continue
        m = re.fullmatch(r"\.reg\s+\.(\w+)\s+(.*)", part)
        if m:
            if m.group(1) not in REG_TYPES:
                raise TranslateError(f"{where(at)}: PTX register type .{m.group(1)} in `{part}` is not emulated")
            for name in m.group(2).split(","):
                name = name.strip().replace("%%", "%")
                if not re.fullmatch(r"%?[A-Za-z_]\w*", name):
                    raise TranslateError(f"{where(at)}: cannot read the PTX register `{name}` in `{part}`")
                regs[name] = (f"emu_reg_{len(regs)}", REG_TYPES[m.group(1)])
            continue
        if part.startswith((".", "}")) or re.fullmatch(r"[\w$]+\s*:.*", part) and "::" not in part.split()[0]:
            raise TranslateError(f"{where(at)}: PTX `{part}` (a label, branch target or directive) is not emulated")
        out.append(re.sub(r"\s+", " ", part))
    return out, regs


def split_ptx_operands(rest, at):
    if not rest:
        return []
    parts, depth, cur = [], 0, ""
    for ch in rest:
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in (p.strip() for p in parts) if p]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", required=True)
    ap.add_argument("--root", action="append", required=True, help="kernel source folder (repeatable)")
    ap.add_argument("input")
    ap.add_argument("output")
    a = ap.parse_args()
    roots = [os.path.realpath(r) for r in a.root]
    with open(a.input, encoding="utf-8") as f:
        text = kernel_regions(f.read(), roots)
    try:
        tr = Translator(text, a.family)
        tr.run()
        out = tr.output()
    except TranslateError as e:
        sys.exit(f"translate.py: {e}")
    if not tr.kernels:
        sys.exit(f"translate.py: {a.input}: no extern \"C\" __global__ entry point in family {a.family}")
    tmp = a.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(out)
    os.replace(tmp, a.output)


if __name__ == "__main__":
    main()
