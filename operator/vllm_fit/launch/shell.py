"""Split `sh -c` / `bash -lc` scripts into commands and words, the way a POSIX shell would.

Only what a container command line needs: separators (newline, `;`, `&&`, `||`, `|`, `&`),
comments, line continuations, single and double quotes, backslash escapes, `$VAR`, `${VAR}`,
`${VAR:-default}` / `${VAR-default}`, `$((arithmetic))`, assignments (`A=1`, `export A=1`)
that later commands see, and redirections (dropped). Command substitution (`$(...)`,
backticks) and variables whose value is unknown make the word an `UnresolvedValue`: the
value exists but cannot be known here, so it is never guessed.

Everything is one left-to-right pass: time is linear in the script length, and malformed
scripts (an unterminated quote) are read leniently instead of raising.
"""

from __future__ import annotations

import re
from typing import Mapping, MutableMapping, Optional

from .argv import UnresolvedValue

Word = str  # a plain str, or an UnresolvedValue when part of it cannot be known
Variables = MutableMapping[str, Optional[str]]  # name -> value; None = defined but unknowable

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_SPECIAL = set("@*#?$!-0123456789")


class _Unknown(Exception):
    pass


class Command(list):
    """The words of one simple command (a list), plus `env`: the variables the script put in its
    environment, i.e. `A=1 cmd` prefix assignments over the exported ones (the container's env
    and `export A=1`), by name; None = set but unknowable."""

    env: dict[str, Optional[str]]

    def __init__(self, words: list, env: Optional[dict[str, Optional[str]]] = None) -> None:
        super().__init__(words)
        self.env = dict(env or {})


def _lookup(name: str, variables: Mapping[str, Optional[str]]) -> Optional[str]:
    """A variable's value, or None when it is unknowable or not defined in the manifest."""
    return variables.get(name)


_MAX_ARITH_CHARS = 1024


def _arith(expr: str, variables: Mapping[str, Optional[str]]) -> Optional[int]:
    """Evaluate `$(( ... ))` with + - * / % and parentheses over integers and known variables."""
    if len(expr) > _MAX_ARITH_CHARS:
        return None  # no real launch computes that much; an unterminated `$((` swallows the rest
    tokens = re.findall(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|[A-Za-z_][A-Za-z0-9_]*|\d+|\*\*|[-+*/%()]|\S", expr)
    values: list[int] = []
    ops: list[str] = []
    prec = {"+": 1, "-": 1, "*": 2, "/": 2, "%": 2, "u-": 3, "u+": 3}

    def apply() -> None:
        op = ops.pop()
        if op in ("u-", "u+"):
            if not values:
                raise _Unknown
            values.append(-values.pop() if op == "u-" else values.pop())
            return
        if len(values) < 2:
            raise _Unknown
        b, a = values.pop(), values.pop()
        if op in ("/", "%") and b == 0:
            raise _Unknown
        if op == "/":
            q = abs(a) // abs(b)
            values.append(q if (a >= 0) == (b >= 0) else -q)
        elif op == "%":
            values.append(a - b * int(a / b))
        else:
            values.append({"+": a + b, "-": a - b, "*": a * b}[op])
        if abs(values[-1]) > 1 << 63:
            raise _Unknown

    try:
        expect_operand = True
        for tok in tokens:
            if tok.isdigit():
                values.append(int(tok))
                expect_operand = False
            elif tok[0] == "$" or _NAME.fullmatch(tok):
                name = tok.strip("${}")
                raw = _lookup(name, variables)
                if raw is None or not re.fullmatch(r"\s*-?\d+\s*", raw):
                    raise _Unknown
                values.append(int(raw))
                expect_operand = False
            elif tok == "(":
                ops.append(tok)
                expect_operand = True
            elif tok == ")":
                while ops and ops[-1] != "(":
                    apply()
                if not ops:
                    raise _Unknown
                ops.pop()
                expect_operand = False
            elif tok in ("+", "-") and expect_operand:
                ops.append("u" + tok)
            elif tok in prec:
                while ops and ops[-1] != "(" and prec[ops[-1]] >= prec[tok]:
                    apply()
                ops.append(tok)
                expect_operand = True
            else:
                raise _Unknown
        while ops:
            if ops[-1] == "(":
                raise _Unknown
            apply()
        if len(values) != 1:
            raise _Unknown
        return values[0]
    except _Unknown:
        return None


def _matching(text: str, start: int, open_: str, close: str, depth: int = 1) -> int:
    """Index just past the `close` that balances the `depth` opens before `start` (or len(text))."""
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


# A key of `variables` (no environment name can contain NUL) saying the environment also holds
# names the manifest does not show (envFrom a Secret or an unread ConfigMap): an undefined name
# may then be defined, so `${X:-default}` is unknowable rather than the default.
OPAQUE_ENV = "\0opaque-envFrom"


class _Scanner:
    def __init__(self, text: str, variables: Variables) -> None:
        self.s = text
        self.vars = variables
        self.open_env = OPAQUE_ENV in variables
        self.exported = set(variables) - {OPAQUE_ENV}  # the container's env is the shell's exported env
        self.commands: list[list[Word]] = []
        self.words: list[Word] = []
        self.parts: list[str] = []
        self.unknown = False
        self.in_word = False
        self.drop_next = False

    # -- words and commands
    def end_word(self) -> None:
        if self.in_word:
            text = "".join(self.parts)
            word: Word = UnresolvedValue(text) if self.unknown else text
            if self.drop_next:
                self.drop_next = False
            else:
                self.words.append(word)
        self.parts, self.unknown, self.in_word = [], False, False

    def end_command(self) -> None:
        self.end_word()
        self.drop_next = False
        words = self.words
        self.words = []
        if not words:
            return
        # Assignments: `A=1 B=2` alone (or after export/readonly/declare/local) set variables.
        body = words
        if words[0] in ("export", "readonly", "declare", "local", "typeset"):
            options = [w for w in words[1:] if w.startswith("-")]
            exports = words[0] == "export" or any("x" in w for w in options)
            body = [w for w in words[1:] if not w.startswith("-")]
            for w in body:
                m = _ASSIGN.match(w)
                if m:
                    self.vars[m.group(1)] = None if isinstance(w, UnresolvedValue) else m.group(2)
                if exports:
                    self.exported.add(m.group(1) if m else str(w))
            return
        i = 0
        while i < len(words) and _ASSIGN.match(words[i]):
            i += 1
        if i == len(words):
            for w in words:
                m = _ASSIGN.match(w)
                assert m is not None
                self.vars[m.group(1)] = None if isinstance(w, UnresolvedValue) else m.group(2)
            return
        # `A=1 cmd`: A is in cmd's environment only; the shell's own variables are unchanged.
        env = {name: self.vars.get(name) for name in self.exported if name in self.vars}
        for w in words[:i]:
            m = _ASSIGN.match(w)
            assert m is not None
            env[m.group(1)] = None if isinstance(w, UnresolvedValue) else m.group(2)
        self.commands.append(Command(words[i:], env))

    # -- expansions
    def dollar(self, i: int) -> int:
        """Expand the `$` at s[i]; return the index after it."""
        s = self.s
        n = len(s)
        if i + 1 >= n:
            self.parts.append("$")
            return i + 1
        c = s[i + 1]
        if s.startswith("$((", i):
            end = _matching(s, i + 3, "(", ")", depth=2)
            inner = s[i + 3: max(i + 3, end - 2)]
            value = _arith(inner, self.vars)
            if value is None:
                self.parts.append(s[i:end])
                self.unknown = True
            else:
                self.parts.append(str(value))
            return end
        if c == "(":
            end = _matching(s, i + 2, "(", ")")
            self.parts.append(s[i:end])
            self.unknown = True
            return end
        if c == "{":
            end = s.find("}", i + 2)
            end = n if end < 0 else end + 1
            inner = s[i + 2: end - 1] if end <= n and s[end - 1: end] == "}" else s[i + 2:end]
            self.braced(inner, s[i:end])
            return end
        m = _NAME.match(s, i + 1)
        if m:
            value = _lookup(m.group(0), self.vars)
            if value is None:
                self.parts.append("$" + m.group(0))
                self.unknown = True
            else:
                self.parts.append(value)
            return m.end()
        if c in _SPECIAL:
            self.parts.append(s[i:i + 2])
            self.unknown = True
            return i + 2
        self.parts.append("$")
        return i + 1

    def braced(self, inner: str, raw: str) -> None:
        m = _NAME.match(inner)
        if not m:
            self.parts.append(raw)
            self.unknown = True
            return
        name, rest = m.group(0), inner[m.end():]
        value = _lookup(name, self.vars)
        if rest == "":
            if value is None:
                self.parts.append(raw)
                self.unknown = True
            else:
                self.parts.append(value)
            return
        for op in (":-", "-", ":=", "="):
            if rest.startswith(op):
                default = rest[len(op):]
                use_default = (name not in self.vars) or (op.startswith(":") and value == "")
                if use_default and name not in self.vars and self.open_env:
                    self.parts.append(raw)  # may come from the envFrom source the manifest does not show
                    self.unknown = True
                    return
                if not use_default and value is not None:
                    self.parts.append(value)
                elif use_default and default and "$" not in default and "`" not in default:
                    # Not defined in the manifest: the default applies (unless the image sets it).
                    self.parts.append(default)
                    if op.endswith("="):
                        self.vars[name] = default
                else:
                    self.parts.append(raw)
                    self.unknown = True
                return
        # ${VAR:+x}, ${#VAR}, ${VAR%pat}, ${VAR//a/b}: not worth modelling.
        self.parts.append(raw)
        self.unknown = True

    # -- the scan
    def run(self) -> list[list[Word]]:  # each a Command
        s = self.s
        n = len(s)
        i = 0
        while i < n:
            c = s[i]
            if c == "\\":
                if i + 1 < n and s[i + 1] == "\n":
                    i += 2
                    continue
                if i + 1 < n:
                    self.parts.append(s[i + 1])
                    self.in_word = True
                i += 2
                continue
            if c in " \t\r":
                self.end_word()
                i += 1
                continue
            if c in "\n;&|()":
                if c == "&" and i > 0 and s[i - 1] in "<>":
                    i += 1
                    continue
                self.end_command()
                i += 1
                continue
            if c in "<>":
                if self.in_word and all(ch.isdigit() for ch in self.parts) and not self.unknown:
                    self.parts, self.in_word = [], False  # `2>`: the fd number is not an argument
                self.end_word()
                while i < n and s[i] in "<>":
                    i += 1
                if i < n and s[i] == "&":
                    i += 1
                self.drop_next = True
                continue
            if c == "#" and not self.in_word:
                end = s.find("\n", i)
                i = n if end < 0 else end
                continue
            if c == "'":
                end = s.find("'", i + 1)
                end = n if end < 0 else end
                self.parts.append(s[i + 1:end])
                self.in_word = True
                i = end + 1
                continue
            if c == '"':
                i = self.double_quoted(i + 1)
                self.in_word = True
                continue
            if c == "$":
                self.in_word = True
                i = self.dollar(i)
                continue
            if c == "`":
                i = self.backtick(i)
                self.in_word = True
                continue
            self.parts.append(c)
            self.in_word = True
            i += 1
        self.end_command()
        return self.commands

    def backtick(self, i: int) -> int:
        """A `command substitution`: kept verbatim, its output is unknowable here."""
        end = self.s.find("`", i + 1)
        end = len(self.s) if end < 0 else end + 1
        self.parts.append(self.s[i:end])
        self.unknown = True
        return end

    def double_quoted(self, i: int) -> int:
        s = self.s
        n = len(s)
        while i < n:
            c = s[i]
            if c == '"':
                return i + 1
            if c == "\\" and i + 1 < n:
                nxt = s[i + 1]
                if nxt == "\n":
                    i += 2
                    continue
                if nxt in '$`"\\':
                    self.parts.append(nxt)
                    i += 2
                    continue
                self.parts.append(c)
                i += 1
                continue
            if c == "$":
                i = self.dollar(i)
                continue
            if c == "`":
                i = self.backtick(i)
                continue
            self.parts.append(c)
            i += 1
        return n


def split_script(script: str, variables: Optional[Mapping[str, Optional[str]]] = None) -> list[list[Word]]:
    """The simple commands of a shell script, each a list of expanded words (a `Command`,
    whose `env` is the environment the script gives that command).

    `variables` maps names the container defines to their value (None = defined but not
    knowable, e.g. from a Secret). A copy is used: assignments in the script affect only
    the commands after them.
    """
    return _Scanner(str(script), dict(variables or {})).run()


def split_words(text: str, variables: Optional[Mapping[str, Optional[str]]] = None) -> list[Word]:
    """All words of `text` as one command line (for values such as VLLM_ADDITIONAL_ARGS)."""
    words: list[Word] = []
    for command in split_script(text, variables):
        words.extend(command)
    return words
