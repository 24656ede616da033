"""The parser: `.net` source text to the AST of `dsl.ast`, or a `NetcError` listing every syntax error.

Lark (LALR, contextual lexer) parses `grammar.lark` to a tree, and `_ToAst` turns that tree
into the frozen AST dataclasses, giving each node the `Span` it came from. The parse is driven
token by token (`_Parse`) so that a syntax error does not end it: the error is recorded, the
rest of the statement is skipped and parsing resumes at the next one, so that a file's
errors are all reported at once.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import sys
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import lark
from lark import Lark, Token, Transformer_NonRecursive, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedToken
from lark.lark import PostLex
from lark.lexer import PatternStr

from . import ast
from .ast import Span
from .diagnostics import Diagnostic, NetcError

_GRAMMAR = Path(__file__).with_name("grammar.lark")


class _Newlines(PostLex):
    """Makes newlines statement terminators, except inside ( ) and [ ].

    Drops an _NL inside parentheses or brackets, collapses runs of _NL (blank and
    comment-only lines), drops those at the start of the file and ends the file with one.
    Its state lives on the instance, not in `process`, because error recovery restarts the
    lexer mid-file and the brackets opened before the restart are still open after it.
    """

    always_accept = ("_NL",)     # so that the contextual lexer produces _NL in every state

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.open: List[Token] = []          # the opening brackets not yet closed, innermost last
        self.last: Optional[Token] = None    # the last token seen, passed on or not
        self.end = (1, 1)                    # the line and column after the last token but _NL

    @property
    def brace_depth(self) -> int:
        return sum(1 for t in self.open if t == "{")

    def in_parens(self) -> bool:
        return bool(self.open) and self.open[-1] in ("(", "[")

    def observe(self, token: Token) -> None:
        """Notes a token; called for every token, including those the parser rejects."""
        self.last = token
        if token.type != "_NL":
            self.end = token.end_line, token.end_column
        # A mismatched bracket must not leave the rest of the file inside parentheses,
        # where newlines no longer end statements and error recovery could not resync.
        # Parentheses never hold a { } block, so a brace closes any left open before it.
        if token in ("(", "[", "{"):
            if token == "{":
                self.close_parens()
            self.open.append(token)
        elif token in (")", "]"):
            if self.in_parens():
                self.open.pop()
        elif token == "}":
            self.close_parens()
            if self.open:
                self.open.pop()

    def close_parens(self) -> None:
        """Forgets the parentheses and brackets open since the innermost { }."""
        while self.in_parens():
            self.open.pop()

    def _at_line_start(self) -> bool:
        return self.last is None or self.last.type == "_NL"

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        for token in stream:
            drop = token.type == "_NL" and (self.in_parens() or self._at_line_start())
            self.observe(token)
            if not drop:
                yield token
        # a file without a final newline; inside open parentheses the parser should see
        # the end of the file rather than an end of line it would reject as well.
        if not self._at_line_start() and not self.in_parens():
            end = Token.new_borrow_pos("_NL", "", self.last)
            self.observe(end)
            yield end


_local = threading.local()
# Building a grammar runs ast.literal_eval, which CPython 3.11 breaks when threads build at the
# same moment ("AST constructor recursion depth mismatch"): construction is serialized.
_build_lock = threading.Lock()


def _lark() -> Tuple[Lark, _Newlines]:
    """One Lark parser per thread: its postlexer carries the state of one parse at a time."""
    if not hasattr(_local, "lark"):
        _local.newlines = _Newlines()
        grammar = _GRAMMAR.read_text(encoding="utf-8")
        with _build_lock:
            _local.lark = Lark(grammar, parser="lalr", lexer="contextual", postlex=_local.newlines,
                               propagate_positions=True, maybe_placeholders=True,
                               cache=tables_file(grammar) or False)
    return _local.lark, _local.newlines


def tables_file(grammar: str) -> Optional[str]:
    """Where Lark keeps this grammar's analysed form (its LALR tables) between processes:
    building them takes 0.05-0.1 s of every process, loading them 4 ms. Lark's `cache=`:
    the file starts with a hash of the grammar, Lark's options and versions, and one that
    does not match, or does not load (damaged, cut short), is rebuilt and rewritten.

    The folder is beside netc's kernel cache, not in it (whose folders are its entries):
    `$NETC_CACHE_DIR-parser/`, by default `~/.cache/netc-parser/`. None (no cache: the
    tables are built) where that folder cannot be made."""
    root = os.environ.get("NETC_CACHE_DIR")
    if root:
        base = Path(root).expanduser().absolute()
        folder = base.parent / f"{base.name or 'netc'}-parser"
    else:
        home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = Path(home) / "netc-parser"
    key = hashlib.sha256("\0".join([grammar, lark.__version__, sys.version]).encode()).hexdigest()[:20]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(folder / f"grammar-{key}.lark")


# ---------------------------------------------------------------- error messages
_STATEMENT_KEYWORDS = {"model", "input", "target", "param", "output", "loss", "optimizer",
                       "schedule", "train", "layer"}
_EXPRESSION_STARTS = {"NAME", "NUMBER", "STRING", "true", "false", "(", "[", "-", "+"}
_OPERATORS = {"+", "-", "*", "/", "@", "**"}
_DESCRIPTIONS = {"NAME": "a name", "NUMBER": "a number", "STRING": "a string",
                 "_NL": "end of line", "$END": "end of file"}


def _symbol(lark: Lark, terminal: str) -> str:
    """A terminal as the text it stands for (`')'`, `'model'`) or its name for NAME etc."""
    try:
        pattern = lark.get_terminal(terminal).pattern
    except KeyError:                     # $END
        return terminal
    return pattern.value if isinstance(pattern, PatternStr) else terminal


def _expected(symbols: set) -> str:
    """What the parser expected, in words: `an expression or ')'`."""
    symbols = set(symbols)
    groups = []
    # a state where a statement may begin (at the top level or in a layer body) also
    # accepts a name: say "a statement" rather than listing every keyword
    if "NAME" in symbols and "param" in symbols:
        symbols -= _STATEMENT_KEYWORDS | {"NAME", "$END"}
        groups.append("a statement")
    if "NUMBER" in symbols:
        symbols -= _EXPRESSION_STARTS
        groups.append("an expression")
    if "*" in symbols:
        # after a name, '.' and '(' are possible too, but a missing operator is the likely mistake
        symbols -= _OPERATORS | {".", "("}
        groups.append("an operator")
    words = groups + [_DESCRIPTIONS[s] for s in ("NAME", "NUMBER", "STRING") if s in symbols]
    words += sorted(f"'{s}'" for s in symbols if s not in _DESCRIPTIONS)
    words += [_DESCRIPTIONS[s] for s in ("_NL", "$END") if s in symbols]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _describe(token: Token, symbol: str) -> str:
    """The unexpected token, in words: `name 'x'`, `')'`, `end of line`."""
    if token.type == "$END" or (token.type == "_NL" and not token):   # the postlexer's last _NL
        return "end of file"
    if token.type == "_NL":
        return "end of line"
    text = token if len(token) <= 30 else token[:27] + "..."
    if token.type == "NAME":
        return f"name '{text}'"
    if token.type in ("NUMBER", "STRING"):
        return f"{token.type.lower()} {text}"
    return f"'{symbol}'"


# ---------------------------------------------------------------- the parse
class _Parse:
    """One parse of one source: feeds Lark's LALR parser token by token, recovering from errors.

    Recovery is by statement. After each newline the parser fed without error, its stacks
    are saved as a checkpoint for the current depth of { } blocks. On an error, tokens are
    skipped up to the next statement-ending newline, and the parser is reset to the
    checkpoint of the block depth reached there, as if the broken statement were not there.
    When the skipped text leaves or enters a block, the checkpoint for that depth is the one
    taken before the block began (or there is none yet, and skipping goes on).
    """

    def __init__(self, source: str, file: str):
        self.source = source
        self.file = file
        self.errors: List[Diagnostic] = []
        self.lark, self.newlines = _lark()
        self.newlines.reset()
        self.interactive = self.lark.parse_interactive(source)
        self.state = self.interactive.parser_state
        self.lexer = self.interactive.lexer_thread
        self.checkpoints: Dict[int, Tuple[list, list]] = {}
        self._save()
        self.accepted: Optional[Token] = None      # the last token the parser accepted
        # a line guessed to begin a statement after a missing ')': its errors would only
        # repeat the one already reported
        self.muted_line: Optional[int] = None

    def run(self):
        """The parse tree, recovered around the errors recorded in `self.errors`."""
        skipping = False
        for token in self._tokens():
            if skipping:
                skipping = not (token.type == "_NL" and self._restore())
            elif self._feed(token):
                if token.type == "_NL":
                    self._save()
            elif self._left_open(token) and self._restore():
                # a ')' is missing at the end of an earlier line: take the statement to have
                # ended there, and this token to begin the next one
                self.newlines.close_parens()
                self.muted_line = token.line
                skipping = not self._feed(token)
            else:
                skipping = not (token.type == "_NL" and self._restore())
        end = Token("$END", "", line=0, column=0)
        if skipping or not self._feed(end):
            # the last statement is unfinished: end the file after the last complete one
            self._restore_depth(0)
            self.state.feed_token(end, True)
        return self.state.value_stack[-1]       # the accepted parse leaves its tree there

    def _feed(self, token: Token) -> bool:
        """Gives the parser a token; False, with the error recorded, if it rejects it."""
        # LALR may reduce before it sees that the token is wrong: what was expected is
        # worked out from the stacks as they were before
        before = list(self.state.state_stack), list(self.state.value_stack)
        try:
            self.state.feed_token(token, token.type == "$END")
        except UnexpectedToken:
            if token.line != self.muted_line:
                self._report(token, before)
            return False
        self.accepted = token
        return True

    def _tokens(self) -> Iterator[Token]:
        """Every token of the source; characters no token starts with come as BADCHAR tokens."""
        while True:
            try:
                yield from self.lexer.lex(self.state)
                return
            except UnexpectedCharacters:
                token = self._bad_character()
            except UnexpectedToken as e:
                # the contextual lexer found a token the parser cannot take here
                token = e.token
            # neither went by the postlexer; it must still see them, then the parser rejects them
            self.newlines.observe(token)
            yield token

    def _bad_character(self) -> Token:
        counter = self.lexer.state.line_ctr
        pos = counter.char_pos
        token = Token("BADCHAR", self.source[pos], start_pos=pos, line=counter.line,
                      column=counter.column, end_line=counter.line, end_column=counter.column + 1)
        counter.feed(self.source[pos])       # step over it, so that lexing can go on
        return token

    def _save(self) -> None:
        depth = self.newlines.brace_depth
        self._forget_deeper(depth)
        self.checkpoints[depth] = (list(self.state.state_stack), list(self.state.value_stack))

    def _restore(self) -> bool:
        """Resets the parser to the checkpoint for the current block depth, if there is one."""
        depth = self.newlines.brace_depth
        if depth not in self.checkpoints:
            return False
        self._restore_depth(depth)
        return True

    def _restore_depth(self, depth: int) -> None:
        states, values = self.checkpoints[depth]
        # in place: the lexer reads the parser's current state from these very lists
        self.state.state_stack[:] = states
        self.state.value_stack[:] = values
        self._forget_deeper(depth)

    def _forget_deeper(self, depth: int) -> None:
        """Drops the checkpoints of blocks deeper than `depth`: those blocks are over."""
        for d in [d for d in self.checkpoints if d > depth]:
            del self.checkpoints[d]

    # ------------------------------------------------------------ reporting
    def _report(self, token: Token, stacks: Tuple[list, list]) -> None:
        if token.type == "BADCHAR":
            self.errors.append(self._bad_character_diagnostic(token))
            return
        trial = self.interactive.copy(deepcopy_values=False)
        trial.parser_state.state_stack, trial.parser_state.value_stack = stacks
        message = f"unexpected {_describe(token, _symbol(self.lark, token.type))}"
        expected = _expected({_symbol(self.lark, t) for t in trial.accepts()})
        if expected:
            message += f" — expected {expected}"
        self.errors.append(Diagnostic(self._token_span(token), message, self._hint(token)))

    def _bad_character_diagnostic(self, token: Token) -> Diagnostic:
        span = self._token_span(token)
        if token == '"':
            return Diagnostic(span, "unterminated string",
                              'a string ends with \'"\' on the line it starts on')
        if token == "'":
            return Diagnostic(span, "unexpected character \"'\"",
                              'strings are written in double quotes: "text"')
        return Diagnostic(span, f"unexpected character {str(token)!r}")

    def _hint(self, token: Token) -> Optional[str]:
        last = self.accepted
        if token == "=" and last is not None and _symbol(self.lark, last.type) in _STATEMENT_KEYWORDS:
            return f"'{last}' is a keyword here; choose another name"
        if not self.newlines.open:
            return None
        opened = self.newlines.open[-1]
        where = f"line {opened.line}, column {opened.column}"
        if token.type == "$END":
            return f"the '{opened}' at {where} is never closed"
        if self._left_open(token):
            return f"the '{opened}' at {where} is still open"
        return None

    def _end_span(self) -> Span:
        """Where the file ends: just after its last token (comments and blank lines aside)."""
        line, col = self.newlines.end
        return Span(self.file, line, col, line, col + 1)

    def _left_open(self, token: Token) -> bool:
        """Whether `token` begins a line inside a '(' or '[' opened on an earlier line.

        A ')' forgotten at the end of a line makes the next line part of the same
        statement, and the parser rejects it only there."""
        if not self.newlines.in_parens() or not token.line:
            return False
        line = self.source.split("\n")[token.line - 1]
        return self.newlines.open[-1].line < token.line and not line[:token.column - 1].strip()

    def _token_span(self, token: Token) -> Span:
        if token.type == "$END" or token.type == "_NL" and not token:   # not token: the added _NL
            return self._end_span()
        if token.type == "_NL":         # the end of a line, not the start of the next
            return Span(self.file, token.line, token.column, token.line, token.column + 1)
        return Span(self.file, token.line, token.column, token.end_line,
                    max(token.end_column, token.column + 1))


# ---------------------------------------------------------------- tree to AST
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def _binop(op: str):
    def method(self, meta, children):
        left, right = children
        return ast.BinOp(op, left, right, self._span(meta))
    return method


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    """Builds the AST from Lark's tree, one method per rule; collects the errors it finds.

    Non-recursive, so that a long chain like `a + b + ... + z` cannot exhaust Python's stack."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file
        self.errors: List[Diagnostic] = []

    def _span(self, meta) -> Span:
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _token_span(self, token: Token) -> Span:
        return Span(self.file, token.line, token.column, token.end_line, token.end_column)

    # statements
    def start(self, meta, statements):
        return tuple(statements)

    def model_decl(self, meta, children):
        (name,) = children
        return ast.ModelDecl(str(name), self._span(meta))

    def input_decl(self, meta, children):
        name, dims = children
        return ast.InputDecl(str(name), dims, self._span(meta), self._token_span(name))

    def target_decl(self, meta, children):
        name, kind, dims = children
        span = self._span(meta)
        if kind is None:                 # `target r[1]`: the kind is implied by the statement
            return ast.TargetDecl(str(name), "real", dims, span, self._token_span(name), span)
        return ast.TargetDecl(str(name), str(kind), dims, span, self._token_span(name),
                              self._token_span(kind))

    def param_decl(self, meta, children):
        name, dims, init = children
        return ast.ParamDecl(str(name), dims, init, self._span(meta), self._token_span(name))

    def assign(self, meta, children):
        name, value = children
        return ast.Assign(str(name), value, self._span(meta), self._token_span(name))

    def output_decl(self, meta, children):
        (name,) = children
        return ast.OutputDecl(str(name), self._span(meta), self._token_span(name))

    def loss_decl(self, meta, children):
        name, value = children
        return ast.LossDecl(None if name is None else str(name), value, self._span(meta))

    def optimizer_decl(self, meta, children):
        (call,) = children
        return ast.OptimizerDecl(call, self._span(meta))

    def schedule_decl(self, meta, children):
        (call,) = children
        return ast.ScheduleDecl(call, self._span(meta))

    def dims(self, meta, exprs):
        return tuple(exprs)

    def bare_call(self, meta, children):
        (name,) = children
        span = self._span(meta)
        return ast.Call(str(name), (), (), span, span)

    def train_block(self, meta, items):
        return ast.TrainBlock(tuple(items), self._span(meta))

    def train_item(self, meta, children):
        key, *values = children
        return ast.TrainItem(str(key), tuple(values), self._span(meta), self._token_span(key))

    def layer_def(self, meta, children):
        name, params, (body, ret) = children
        return ast.LayerDef(str(name), params, body, ret, self._span(meta), self._token_span(name))

    def layer_params(self, meta, params):
        seen = set()
        defaulted = False
        for p in params:
            if p.name in seen:
                self.errors.append(Diagnostic(p.span, f"duplicate parameter '{p.name}'"))
            seen.add(p.name)
            if p.default is None and defaulted:
                self.errors.append(Diagnostic(
                    p.span, f"parameter '{p.name}' without a default follows one with a default",
                    "put the parameters that have defaults last"))
            defaulted = defaulted or p.default is not None
        return tuple(params)

    def layer_param(self, meta, children):
        name, default = children
        return ast.LayerParam(str(name), default, self._span(meta))

    def layer_body(self, meta, children):
        *body, ret = children
        return tuple(body), ret

    # expressions
    add = _binop("+")
    sub = _binop("-")
    mul = _binop("*")
    div = _binop("/")
    matmul = _binop("@")
    pow = _binop("**")

    def neg(self, meta, children):
        (operand,) = children
        return ast.UnaryOp("-", operand, self._span(meta))

    def number(self, meta, children):
        (token,) = children
        try:
            value = int(token) if token.isdigit() else float(token)
        except ValueError:          # more digits than Python converts
            value = math.inf
        if isinstance(value, int) and value.bit_length() > 1024:
            value = math.inf
        if not math.isfinite(value):
            self.errors.append(Diagnostic(self._token_span(token), f"the number {token if len(token) <= 24 else token[:10] + '...' + token[-6:]} is too large",
                                          "numbers must be finite, below about 1.8e308"))
            value = 0.0
        return ast.Num(value, self._span(meta))

    def string(self, meta, children):
        (token,) = children
        return ast.Str(self._unescape(token), self._span(meta))

    def _unescape(self, token: Token) -> str:
        def replace(m: re.Match) -> str:
            char = m.group(1)
            if char not in _ESCAPES:
                col = token.column + 1 + m.start()      # 1: the opening quote
                self.errors.append(Diagnostic(
                    Span(self.file, token.line, col, token.line, col + 2),
                    f"unknown escape '\\{char}' in a string",
                    "known escapes are \\n \\t \\r \\0 \\\\ \\\" and \\'"))
                return char
            return _ESCAPES[char]
        return re.sub(r"\\(.)", replace, token[1:-1])

    def true(self, meta, children):
        return ast.Bool(True, self._span(meta))

    def false(self, meta, children):
        return ast.Bool(False, self._span(meta))

    def name(self, meta, parts):
        return ast.Name(".".join(parts), self._span(meta))

    def list_expr(self, meta, items):
        return ast.ListExpr(tuple(items), self._span(meta))

    def call(self, meta, children):
        func, args = children
        positional, keywords, seen = [], [], set()
        for arg in args or ():
            if isinstance(arg, ast.Keyword):
                if arg.name in seen:
                    self.errors.append(Diagnostic(arg.span, f"duplicate keyword argument '{arg.name}'"))
                seen.add(arg.name)
                keywords.append(arg)
            elif keywords:
                self.errors.append(Diagnostic(arg.span, "positional argument after a keyword argument",
                                              "put positional arguments before key=value ones"))
            else:
                positional.append(arg)
        return ast.Call(str(func), tuple(positional), tuple(keywords), self._span(meta),
                        self._token_span(func))

    def args(self, meta, args):
        return args

    def keyword(self, meta, children):
        name, value = children
        return ast.Keyword(str(name), value, self._span(meta))


# ---------------------------------------------------------------- the API
MAX_LINES = 20_000   # a .net file longer than this is refused (checking is linear, Numba's compile is not)


def parse(source: str, file: str = "<string>") -> ast.Program:
    """Parses a `.net` source; raises NetcError with every syntax error found."""
    lines = source.count("\n") + 1
    if lines > MAX_LINES:
        raise NetcError.single(f"the file has {lines:,} lines; netc reads models of up to {MAX_LINES:,} lines",
                               Span(file, MAX_LINES + 1, 1, MAX_LINES + 1, 2),
                               hint="a model that large would take minutes to compile; define layers and "
                                    "call them instead of writing each step out", source=source)
    try:
        driver = _Parse(source, file)
        tree = driver.run()
        builder = _ToAst(file)
        statements = builder.transform(tree)
    except Exception as e:           # a bug of ours, still reported as a diagnostic, not a traceback
        raise NetcError.single(f"internal parser error: {type(e).__name__}: {e}",
                               Span(file, 1, 1, 1, 2), source=source) from e
    errors = driver.errors + builder.errors + _too_deep(statements)
    if errors:
        raise NetcError(errors, source)
    return ast.Program(file, source, statements)


MAX_DEPTH = 100      # expressions nested deeper (calls in calls, a chain of '+') are refused


def _too_deep(statements) -> List[Diagnostic]:
    """A diagnostic for each statement whose expression nests more than MAX_DEPTH levels
    (the checker and the compiler walk expressions recursively: bounded depth, bounded stack)."""
    out = []
    for st in statements:
        stack = [(st, 0)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                span = getattr(node, "span", None) or getattr(st, "span")
                out.append(Diagnostic(span, f"this expression is nested more than {MAX_DEPTH} levels deep",
                                      "split it into named steps (h1 = ..., h2 = ...)"))
                break
            for v in (vars(node).values() if hasattr(node, "__dataclass_fields__") else node):
                if isinstance(v, (list, tuple)) or hasattr(v, "__dataclass_fields__") and not isinstance(v, Span):
                    stack.append((v, depth + (not isinstance(v, (list, tuple)))))
    return out


def decode(data: bytes, file: str = "<string>") -> str:
    """The text of a `.net` file's bytes (UTF-8, a BOM allowed, newlines as text mode reads
    them); bytes that are not UTF-8 (a Latin-1 file, binary data) are a located NetcError at
    the first of them."""
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")   # as text mode reads it
    except UnicodeDecodeError as e:
        data = e.object             # without the BOM, as e.start counts
        head = data[:e.start]
        line = head.count(b"\n") + 1
        col = len(head[head.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
        shown = data.decode("utf-8", "replace").replace("\x00", " ")
        raise NetcError.single(f"byte 0x{data[e.start]:02x} is not UTF-8 text: a .net file is UTF-8",
                               Span(file, line, col, line, col + 1),
                               hint="save the file as UTF-8 (non-ASCII characters belong only in comments "
                                    "and strings)", source=shown) from None


def parse_file(path) -> ast.Program:
    """Parses the `.net` file at `path`; an unreadable file is a NetcError too."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise NetcError.single(f"cannot read {str(path)!r}: {e.strerror or e}", Span(str(path), 0, 0, 0, 0))
    return parse(decode(data, str(path)), str(path))
