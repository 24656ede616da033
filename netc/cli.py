"""The `netc` command: train, check, show.

Mistakes in the user's file, data or command line print located diagnostics and exit with
status 2, never a traceback."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

EXIT_USER = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netc", description="Compile and train .net models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="compile FILE.net and train it on the data of its train block")
    t.add_argument("file", metavar="FILE.net")
    t.add_argument("--epochs", type=int, help="override the train block's epochs")
    t.add_argument("--seed", type=int, help="override the train block's seed")
    t.add_argument("--batch", help="override the batch size (a number or 'full')")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--json", action="store_true", help="print the final metrics as one JSON object, last")
    t.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    t.add_argument("--save", metavar="DIR", help="save the trained model (a checkpoint directory)")
    t.add_argument("--no-pass", action="append", default=[], metavar="NAME", help="switch a compiler pass off")
    t.add_argument("--verbose", action="store_true", help="print the time of each compiler stage")

    c = sub.add_parser("check", help="parse and check FILE.net, report every problem")
    c.add_argument("file", metavar="FILE.net")

    s = sub.add_parser("show", help="print a compiler stage of FILE.net")
    s.add_argument("file", metavar="FILE.net")
    s.add_argument("--stage", choices=["ast", "ir", "grad", "optimized", "kernels"], default="kernels")
    s.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    s.add_argument("--no-pass", action="append", default=[], metavar="NAME")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from netc.dsl import NetcError
    from netc.runtime.data import DataError
    from netc.runtime.model import TrainingDiverged
    try:
        return {"train": cmd_train, "check": cmd_check, "show": cmd_show}[args.command](args)
    except NetcError as e:
        print(e.render(), file=sys.stderr)
        n = len(e.diagnostics)
        if n > 1:
            print(f"{n} errors", file=sys.stderr)
        return EXIT_USER
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER
    except TrainingDiverged as e:
        print(f"error: training diverged: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _check_passes(names):
    from netc.compiler.passes import PASS_NAMES
    from netc.dsl import NetcError
    for n in names:
        if n not in PASS_NAMES:
            raise NetcError.single(f"unknown pass '{n}' (passes: {', '.join(PASS_NAMES)})")


def _warnings(model) -> None:
    from netc.dsl.diagnostics import render
    for w in model.ir.warnings:
        print(render(w, model.source), file=sys.stderr)


def cmd_train(args) -> int:
    import numpy as np
    import netc
    from netc.runtime import data as D
    from netc.runtime.settings import load
    _check_passes(args.no_pass)
    t0 = time.perf_counter()
    model = netc.compile(args.file, dtype=args.dtype, seed=args.seed, disabled_passes=args.no_pass)
    _warnings(model)
    s = model.settings
    if args.seed is not None:
        s.seed = args.seed
    if s.data is None:
        from netc.dsl import NetcError
        raise NetcError.single(f"{args.file}: the train block names no data",
                               hint="add `data = ...` to the train block")
    ds = load(s.data, s.base_dir)
    t = model.ir.target
    width = t.classes if t.kind == "class" else int(np.prod(t.shape))
    ds = D.validate(ds, model.ir.input_shape, t.kind, width, ds.name)
    stratify = t.kind == "class"
    train, val, test = D.split(ds, s.split, s.seed, stratify)
    train, val, test = (model.prepare(d.X, d.y, d.name) for d in (train, val, test))
    compile_s = time.perf_counter() - t0
    log = None if args.quiet else (lambda line: print(line, flush=True))
    if log:
        print(f"netc: model '{model.name}': {sum(a.size for a in model.params.values())} params; "
              f"{len(train.X)} train / {len(val.X)} val / {len(test.X)} test samples; "
              f"compiled in {compile_s:.2f} s", flush=True)
        if args.verbose:
            for k, v in model.artifact.timings.items():
                print(f"  {k:10s} {v * 1000:8.1f} ms")
    t1 = time.perf_counter()
    history = model._fit(train, val if len(val.X) else None, epochs=args.epochs,
                         batch=args.batch if args.batch is None or args.batch == "full" else int(args.batch),
                         log=log)
    first_step_s = history.epochs[0]["time"] if history.epochs else 0.0
    results = {"model": model.name, "epochs": model.epoch}
    for name, d in (("train", train), ("val", val), ("test", test)):
        if len(d.X):
            results[name] = model._metrics(d)
    if not args.quiet:
        print(_summary(results))
        print(f"trained in {time.perf_counter() - t1:.2f} s (first epoch, with compile: {first_step_s:.2f} s)")
    if args.save:
        model.save(args.save)
        if not args.quiet:
            print(f"saved to {args.save}")
    if args.json:
        print(json.dumps(results))
    return 0


def _summary(results) -> str:
    splits = [s for s in ("train", "val", "test") if s in results]
    keys = list(dict.fromkeys(k for s in splits for k in results[s]))
    lines = [f"{'':12s}" + "".join(f"{s:>10s}" for s in splits)]
    for k in keys:
        lines.append(f"{k:12s}" + "".join(f"{results[s][k]:10.4f}" if k in results[s] else f"{'':10s}"
                                         for s in splits))
    return "\n".join(lines)


def cmd_check(args) -> int:
    import netc
    model = netc.compile(args.file)
    _warnings(model)
    ir = model.ir
    print(f"{args.file}: ok: model '{ir.name}', {len(ir.params)} params "
          f"({sum(p.node is not None and int(__import__('numpy').prod(p.shape)) for p in ir.params)} numbers), "
          f"{len(ir.losses)} loss term{'s' if len(ir.losses) != 1 else ''}")
    return 0


def cmd_show(args) -> int:
    from netc.compiler import show
    from netc.dsl import parse
    import netc
    _check_passes(args.no_pass)
    source, file = netc._read(args.file)
    program = parse(source, file)
    print(show.stage(program, args.stage, args.dtype, args.no_pass))
    return 0


if __name__ == "__main__":
    sys.exit(main())
