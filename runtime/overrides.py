"""`--set KEY=VALUE`: a command line's values for any key of the file's train block, optimizer
and schedule, written into the model's text so that they are checked exactly as the file's own
values (the same messages and did-you-means) and so that the run directory's copy of the
source, and every checkpoint, hold what was trained.

    train.KEY=VALUE        a train block key: train.epochs=5, train.split=0.8,0.2, train.data=moons(n=500)
    optimizer=CALL         the whole optimizer: optimizer=adam(lr=0.001)
    optimizer.ARG=VALUE    one argument of the file's optimizer (adam, the default, without one)
    schedule=CALL          the whole schedule: schedule=cosine(epochs=100)
    schedule.ARG=VALUE     one argument of the file's schedule

VALUE is written as in a `.net` file. A diagnostic about a value given here names the
`--set` (`--set train.epochs=-5: error: 'epochs' must be a whole number >= 0, got -5`); the
others keep the file's lines."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from netc.compiler.optim import OPTIMIZER_ARGS
from netc.compiler.trainblock import TRAIN_KEYS
from netc.dsl import NetcError, ast as A, parse
from netc.dsl.diagnostics import Diagnostic, closest

from . import schedules as S

SECTIONS = ("train", "optimizer", "schedule")

# a region of the edited text: (start, end) offsets, the --set text it holds, and the newlines
# it added (negative: removed) compared with the text it replaced
Region = Tuple[int, int, str, int]


def _known_keys() -> List[str]:
    args = sorted({a for d in OPTIMIZER_ARGS.values() for a in d} | {a for t in S.SCHEDULE_ARGS.values() for a in t})
    return ([f"train.{k}" for k in TRAIN_KEYS] + ["optimizer", "schedule"]
            + [f"optimizer.{a}" for a in args] + [f"schedule.{a}" for a in args])


def parse_sets(items: Sequence[str]) -> List[Tuple[str, Optional[str], str, str]]:
    """(section, key or None, value, the item as given) of each KEY=VALUE; the last of two for
    the same key wins. Raises NetcError for an item that names no section of the file."""
    out = {}
    for item in items:
        where = A.Span(f"--set {item}", 0, 0, 0, 0)
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name or not value or "\n" in value:
            raise NetcError.single("--set takes KEY=VALUE, e.g. --set train.epochs=5 or --set optimizer.lr=0.01",
                                   where)
        section, _, key = name.partition(".")
        if section not in SECTIONS or (section == "train" and not key):
            bare = {k: f"train.{k}" for k in TRAIN_KEYS}
            bare.update({a: f"optimizer.{a}" for d in OPTIMIZER_ARGS.values() for a in d})
            close = bare.get(name) or closest(name, _known_keys())
            raise NetcError.single(
                f"not a key of the file; keys are train.KEY, optimizer, optimizer.ARG, "
                f"schedule, schedule.ARG", where, hint=f"did you mean '{close}'?" if close else None)
        # the value alone first: a value that is no expression (`(3`) must not be read
        # together with the file's next lines
        if section == "train":
            probe = f"train {{\n  k = {value}\n}}\n"
        elif not key:
            probe = f"{section} {value}\n"           # a whole call
        else:
            probe = f"optimizer sgd(k={value})\n"    # one argument
        try:
            parse(probe, where.file)
        except NetcError as e:
            first = e.diagnostics[0]
            raise NetcError.single(f"the value '{value}' cannot be read: {first.message}", where,
                                   hint="write it as in the file, e.g. train.split=0.8,0.2 or "
                                        "optimizer=adam(lr=0.001)") from None
        out[(section, key or None)] = (section, key or None, value, item)
    return list(out.values())


def apply_sets(source: str, file: str, items: Sequence[str]) -> Tuple[str, List[Region]]:
    """`source` with the --set items written in, and where they are in it (for `relocate`).
    Raises NetcError (relocated) when the file or an item cannot be read."""
    sets = parse_sets(items)
    regions: List[Region] = []
    if not sets:
        return source, regions
    # first the whole optimizer / schedule, then the keys (which may be the new call's)
    for stage in (lambda s: s[1] is None and s[0] != "train", lambda s: s[1] is not None or s[0] == "train"):
        chosen = [s for s in sets if stage(s)]
        if not chosen:
            continue
        try:
            program = parse(source, file)
        except NetcError as e:
            raise relocate(e, source, regions) from None
        edits = []
        for section in SECTIONS:
            mine = [s for s in chosen if s[0] == section]
            if mine:
                edits += _edits(program, source, section, mine)
        source, regions = _apply(source, edits, regions)
    return source, regions


def _edits(program: A.Program, text: str, section: str, sets) -> list:
    """(start, end, replacement, label) edits of `text` that write `sets` of one section."""
    lines = _line_starts(text)
    off = lambda line, col: lines[line - 1] + col - 1
    span_of = lambda sp: (off(sp.line, sp.col), off(sp.end_line, sp.end_col))
    end = len(text)
    nl = "" if text.endswith("\n") or not text else "\n"
    label = lambda group: "; ".join(f"--set {s[3]}" for s in group)
    if section == "train":
        blocks = program.of_type(A.TrainBlock)
        if not blocks:
            body = "".join(f"  {s[1]} = {s[2]}\n" for s in sets)
            return [(end, end, f"{nl}train {{\n{body}}}\n", label(sets))]
        block, edits, new = blocks[0], [], []
        for s in sets:
            item = block.get(s[1])
            if item is not None:                          # the whole item, as its messages point at it
                a, _ = span_of(item.key_span)
                _, b = span_of(item.values[-1].span)
                edits.append((a, b, f"{s[1]} = {s[2]}", label([s])))
            else:
                new.append(s)
        if new:
            close = span_of(block.span)[1] - 1            # the closing brace
            line_start = text.rfind("\n", 0, close) + 1
            body = "".join(f"  {s[1]} = {s[2]}\n" for s in new)
            if text[line_start:close].strip():            # `train { epochs = 5 }` on one line
                edits.append((close, close, "\n" + body, label(new)))
            else:
                edits.append((line_start, line_start, body, label(new)))
        return edits
    decls = program.of_type(A.OptimizerDecl if section == "optimizer" else A.ScheduleDecl)
    whole = [s for s in sets if s[1] is None]
    if whole:
        s = whole[0]
        if decls:
            a, b = span_of(decls[0].call.span)
            return [(a, b, s[2], label([s]))]
        return [(end, end, f"{nl}{section} {s[2]}\n", label([s]))]
    if not decls:
        if section == "schedule":
            raise NetcError.single("the file has no schedule statement, so it has no argument to set",
                                   A.Span(f"--set {sets[0][3]}", 0, 0, 0, 0),
                                   hint="give the whole schedule, e.g. --set schedule=cosine(epochs=100)")
        args = ", ".join(f"{s[1]}={s[2]}" for s in sets)       # the default optimizer, adam
        return [(end, end, f"{nl}optimizer adam({args})\n", label(sets))]
    call, edits, new = decls[0].call, [], []
    for s in sets:
        kw = next((k for k in call.kwargs if k.name == s[1]), None)
        if kw is not None:
            edits.append((*span_of(kw.value.span), s[2], label([s])))
        elif s[1] == "lr" and section == "optimizer" and call.args:      # sgd(0.1): lr positionally
            edits.append((*span_of(call.args[0].span), s[2], label([s])))
        else:
            new.append(s)
    if new:
        args = ", ".join(f"{s[1]}={s[2]}" for s in new)
        a, b = span_of(call.span)
        if text[b - 1:b] == ")":                                 # adam(...)
            edits.append((b - 1, b - 1, (", " if call.args or call.kwargs else "") + args, label(new)))
        else:                                                    # `optimizer adam`
            edits.append((b, b, f"({args})", label(new)))
    return edits


def _line_starts(text: str) -> List[int]:
    starts = [0]
    for i, c in enumerate(text):
        if c == "\n":
            starts.append(i + 1)
    return starts


def _apply(text: str, edits, regions: List[Region]) -> Tuple[str, List[Region]]:
    """Apply non-overlapping edits (offsets of `text`), moving the earlier regions with them."""
    for s, e, new, label in sorted(edits, key=lambda x: (x[0], x[1]), reverse=True):
        delta = len(new) - (e - s)
        regions = [(a + delta if a >= e else a, b + delta if b >= e else b, lab, n) for a, b, lab, n in regions]
        regions.append((s, s + len(new), label, new.count("\n") - text[s:e].count("\n")))
        text = text[:s] + new + text[e:]
    return text, regions


def relocate(err: NetcError, edited: str, regions: List[Region], original: Optional[str] = None) -> NetcError:
    """`err` (about the edited text) as the user reads it: a diagnostic inside a --set value
    names that --set; the others get their lines in the file (`original`'s) back."""
    if not regions:
        return err
    starts = _line_starts(edited)
    out = []
    for d in err.diagnostics:
        sp = d.span
        if sp.line <= 0 or sp.line > len(starts):
            out.append(d)
            continue
        o = starts[sp.line - 1] + sp.col - 1
        inside = [r for r in regions if r[0] <= o < max(r[1], r[0] + 1)]
        if inside:
            label = min(inside, key=lambda r: r[1] - r[0])[2]
            out.append(Diagnostic(A.Span(label, 0, 0, 0, 0), d.message, d.hint, d.severity))
            continue
        shift = sum(n for a, b, _, n in regions if b <= o)
        out.append(Diagnostic(A.Span(sp.file, sp.line - shift, sp.col, sp.end_line - shift, sp.end_col),
                              d.message, d.hint, d.severity))
    return NetcError(out, original if original is not None else err.source)
