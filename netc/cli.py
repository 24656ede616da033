"""The `netc` command: train, check, show, eval, predict, plot, export, summary (docs/cli.md).

Mistakes in the user's file, data or command line print located diagnostics and exit with
status 2, never a traceback."""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
import warnings

import numpy as np

import netc
from netc.compiler import cache, export_onnx, frontend, show
from netc.compiler.files import atomic_open
from netc.compiler.mathview import math_text, structural_keys, value_names
from netc.compiler.graphviz import render as render_dot, title_of, to_dot
from netc.compiler.passes import PASS_NAMES
from netc.compiler.summary import summarize
from netc.compiler.threads import configure, describe
from netc.dsl import NetcError, UserError, parse
from netc.dsl.ast import NO_SPAN
from netc.dsl.diagnostics import render
from netc.runtime import checkpoint, distributed, session
from netc.runtime.build import check_memory, check_source, read_source, size_text
from netc.runtime.diverge import TrainingDiverged
from netc.runtime.plots import plot_run
from netc.runtime.rundir import TensorBoardLog
from netc.runtime.predictions import read_features, write_predictions
from netc.runtime.progress import Progress, fmt_metric
from netc.runtime.settings import parse_data_arg

EXIT_USER = 2
# the command's imports (NumPy, Numba, networkx, Lark, netc's modules), for --verbose
IMPORTS_S = time.perf_counter() - netc._imported_at


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netc", description="Compile and train .net models.")
    p.add_argument("--version", action="version", version=f"netc {netc.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="compile FILE.net and train it on the data of its train block")
    t.add_argument("file", metavar="FILE.net", nargs="?", help="the model (optional with --resume)")
    t.add_argument("--epochs", type=int, help="override the train block's epochs (with --resume: extend the run)")
    t.add_argument("--seed", type=int, help="override the train block's seed")
    t.add_argument("--batch", help="override the batch size (a number or 'full')")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a key of the file's train block, optimizer or schedule, checked as in the file: "
                        "train.epochs=5, train.split=0.8,0.2, optimizer.lr=0.01, optimizer=adam(lr=0.001), "
                        "schedule.gamma=0.5 (repeatable)")
    t.add_argument("--data", metavar="SOURCE", help="train on this data instead of the train block's: a .csv/.npz/.npy "
                   "file, or a source as in a train block, e.g. 'moons(n=500)'")
    t.add_argument("--label", metavar="COLUMN", help="the label column of a --data CSV file (name or 0-based index)")
    t.add_argument("--dtype", choices=["float32", "float64"], default=None, help="float type (default float32)")
    t.add_argument("--json", action="store_true", help="print the final metrics as one JSON object, last "
                   "(with --quiet: the JSON alone)")
    t.add_argument("--quiet", action="store_true", help="no progress (bar or per-epoch lines); the final table stays "
                   "(with --json: only the JSON)")
    t.add_argument("--out", metavar="DIR", help="the run directory (default runs/<model>-<time>/)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly where its last checkpoint is")
    t.add_argument("--plot", action="store_true", help="write loss/metric curves (and decision regions) as PNG into the run directory")
    t.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files into "
                   "RUN/tensorboard/ (needs tensorboardX: pip install 'netc[tensorboard]')")
    t.add_argument("--save", metavar="DIR", help="also save the trained model to DIR (a checkpoint directory)")
    t.add_argument("--no-pass", action="append", default=[], metavar="NAME", help="switch a compiler pass off")
    t.add_argument("--verbose", action="store_true", help="print the time of each compiler stage, the rewrites "
                   "that fired and the thread counts")
    t.add_argument("--threads", type=int, metavar="N", help="BLAS threads (default: NETC_THREADS, else every core available to this process)")
    t.add_argument("--checkpoint-every", type=float, default=1.0, metavar="SECONDS",
                   help="write the run's checkpoints at most every SECONDS (default 1; 0: after every epoch); "
                        "always at the end and when the run stops early")
    t.add_argument("--ranks", type=int, metavar="N", help="train data-parallel on N MPI ranks: runs this command "
                   "under `mpiexec -n N` (or start it so yourself); needs netc[mpi]")
    t.add_argument("--device", choices=["cpu", "cuda", "auto"], default=None,
                   help="where to train: cpu, cuda (an NVIDIA GPU), auto (the GPU when there is one); "
                        "default: the train block's `device`, else cpu")

    c = sub.add_parser("check", help="parse and check FILE.net, report every problem")
    c.add_argument("file", metavar="FILE.net")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="check with this value of a train block, optimizer or schedule key (as netc train --set)")

    s = sub.add_parser("show", help="print a compiler stage of FILE.net")
    s.add_argument("file", metavar="FILE.net")
    s.add_argument("--stage", choices=["ast", "ir", "grad", "optimized", "kernels"], default="kernels")
    s.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    s.add_argument("--no-pass", action="append", default=[], metavar="NAME")
    s.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="the backend whose kernels to show")
    s.add_argument("--math", action="store_true", help="with --stage grad: the gradient as equations in the "
                   "file's names and the lecture's notation (read from the graph after its passes)")

    gr = sub.add_parser("graph", help="draw the graph of FILE.net: the forward pass and loss, or with --train "
                        "the whole train step (forward, backward, update); the file's names and lines; fused loops")
    gr.add_argument("file", metavar="FILE.net")
    gr.add_argument("-o", "--output", metavar="OUT.svg|png|dot", required=True,
                    help=".dot is written directly; svg and png through Graphviz's `dot`, else drawn with matplotlib")
    gr.add_argument("--train", action="store_true", help="the whole train step: forward, backward and update")
    gr.add_argument("--entry", choices=["train_step", "evaluate", "predict"], default=None,
                    help="the entry point to draw (default: evaluate, the forward pass and loss; --train: train_step)")
    gr.add_argument("--no-pass", action="append", default=[], metavar="NAME")

    ca = sub.add_parser("cache", help="the kernel cache: `info` lists its entries, `clear` removes them")
    ca.add_argument("action", choices=["info", "clear"])

    e = sub.add_parser("eval", help="metrics (and confusion matrix) of a checkpoint or run on data")
    e.add_argument("checkpoint", metavar="CKPT", help="a checkpoint directory, or a run directory")
    e.add_argument("--data", metavar="SOURCE", help="a .csv/.npz/.npy file or a data source (default: the "
                   "training data, split as in training)")
    e.add_argument("--label", metavar="COLUMN", help="the label column of a CSV file (name or 0-based index)")
    e.add_argument("--json", action="store_true", help="print the results as one JSON object")

    pr = sub.add_parser("predict", help="write a checkpoint's predictions for the samples of a file")
    pr.add_argument("checkpoint", metavar="CKPT", help="a checkpoint directory, or a run directory")
    pr.add_argument("--data", metavar="SOURCE", required=True, help="the samples: a .csv/.npz/.npy file (a label "
                    "column is ignored) or a data source")
    pr.add_argument("--label", metavar="COLUMN", help="a column of the CSV file to ignore (name or 0-based index)")
    pr.add_argument("-o", "--output", metavar="OUT.csv", help="where to write (default: standard output)")

    ex = sub.add_parser("export", help="write a checkpoint's predict graph as an ONNX file (needs netc[onnx])")
    ex.add_argument("checkpoint", metavar="RUN_OR_CKPT", help="a checkpoint directory, or a run directory")
    ex.add_argument("-o", "--output", metavar="MODEL.onnx", required=True, help="the ONNX file to write")

    su = sub.add_parser("summary", help="the per-statement table of FILE.net: shapes, params, FLOPs")
    su.add_argument("file", metavar="FILE.net")

    pl = sub.add_parser("plot", help="draw the curves (and decision regions) of a run as PNG files")
    pl.add_argument("run", metavar="DIR", help="a run directory")
    pl.add_argument("-o", "--output", metavar="OUTDIR", help="where to write the PNG files (default: DIR)")
    return p


EXIT_PIPE = 128 + 13       # what the shell reports for a program ended by SIGPIPE


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]      # for --ranks: the same command under mpiexec
    # netc reports non-finite values itself (data checks, divergence), in words
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    try:
        code = {"train": cmd_train, "check": cmd_check, "show": cmd_show, "eval": cmd_eval,
                "predict": cmd_predict, "plot": cmd_plot, "graph": cmd_graph, "cache": cmd_cache,
                "export": cmd_export, "summary": cmd_summary}[args.command](args)
        sys.stdout.flush()         # a closed pipe shows here, not at the interpreter's exit
        return code
    except BrokenPipeError:       # `netc ... | head`: the reader has all it wants; end quietly
        _silence_stdout()
        return EXIT_PIPE
    except UserError as e:        # the user's mistake: the message, no traceback
        print(_render(e), file=sys.stderr)
        n = len(e.diagnostics) if isinstance(e, NetcError) else 1
        if n > 1:
            print(f"{n} errors", file=sys.stderr)
        return EXIT_USER
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        if e.checkpoint:
            print(f"last good checkpoint: {e.checkpoint}", file=sys.stderr)
        if e.restored_epoch:
            print(f"the model keeps the weights of epoch {e.restored_epoch} (early stopping's best)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:          # the user's environment: a full disk, a read-only or missing path
        print(f"error: {_os_error(e)}", file=sys.stderr)
        return EXIT_USER
    except MemoryError:
        print("error: this machine does not have the memory this needs (smaller shapes, batches or data "
              "would fit)", file=sys.stderr)
        return EXIT_USER


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's last flush of what is
    still buffered for a closed pipe raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):    # stdout is no file (captured in a test)
        pass


_OS_HINTS = {errno.ENOSPC: "the disk is full: free some space and run again (a run continues with --resume)",
             errno.EDQUOT: "the disk quota is used up: free some space and run again",
             errno.EROFS: "the file system is read-only: choose a writable place (--out, -o, NETC_CACHE_DIR)",
             errno.EACCES: "no permission: choose a place you may write to (--out, -o, NETC_CACHE_DIR)",
             errno.EPERM: "no permission: choose a place you may write to (--out, -o, NETC_CACHE_DIR)"}


def _os_error(e: OSError) -> str:
    """A file-system error as one line, with the path and what to do."""
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f)
    text = f"{where}: {e.strerror or e}" if where else str(e.strerror or e)
    hint = _OS_HINTS.get(e.errno)
    return text + (f"\n    hint: {hint}" if hint else "")


def _render(e: UserError) -> str:
    """A user error as text: a NetcError with its carets; one without a place in a file (about
    the command line, a run directory, a checkpoint, the data) reads `error: ...`."""
    if not isinstance(e, NetcError):
        return e.render()
    if all(d.span == NO_SPAN for d in e.diagnostics):
        return "\n".join(f"{d.severity}: {d.message}" + (f"\n    hint: {d.hint}" if d.hint else "")
                         for d in e.diagnostics)
    return e.render()


def _check_passes(names):
    for n in names:
        if n not in PASS_NAMES:
            raise NetcError.single(f"unknown pass '{n}' (passes: {', '.join(PASS_NAMES)})")


def _warnings(model) -> None:
    for w in model.ir.warnings:
        print(render(w, model.source), file=sys.stderr)


def cmd_train(args) -> int:
    _check_passes(args.no_pass)
    if args.ranks is not None and args.ranks != 1 and distributed.launched_size() <= 1:
        return distributed.launch(args.ranks, distributed.without_ranks(args.argv))    # (under mpiexec: a rank)
    if args.threads is not None:
        if args.threads < 1:
            raise NetcError.single("--threads must be at least 1")
        configure(args.threads)
    comm = distributed.setup(args.threads)      # under mpiexec: one rank of a data-parallel run
    if comm is not None and comm.Get_rank() != 0:
        return _train_rank(args)
    if not args.checkpoint_every >= 0:
        raise NetcError.single(f"--checkpoint-every must be >= 0 seconds, got {args.checkpoint_every:g}")
    if args.tensorboard:
        TensorBoardLog.writer_class()       # missing: exit 2 before any run directory is made
    if args.resume:
        job = session.resume_job(args.resume, args.file, epochs=args.epochs, given={
            "seed": args.seed, "batch": args.batch, "data": args.data, "label": args.label, "dtype": args.dtype,
            "no_pass": args.no_pass, "out": args.out, "set": args.set})
    else:
        if not args.file:
            raise NetcError.single("netc train: give FILE.net (or --resume DIR)")
        spec = parse_data_arg(args.data, args.label) if args.data else None
        job = session.new_job(args.file, dtype=args.dtype, disabled=args.no_pass, out=args.out,
                              overrides={"epochs": args.epochs, "seed": args.seed, "batch": args.batch, "data": spec},
                              device=args.device, sets=args.set)
    model, run = job.model, job.run
    run.checkpoint_every = args.checkpoint_every
    if args.tensorboard:
        run.log_tensorboard()
    _warnings(model)
    progress = Progress.for_output(args.quiet)
    progress.note(f"netc: model '{model.name}': {sum(a.size for a in model.params.values())} params in "
                  f"{len(model.params)} tensors; "
                  f"{len(job.train.X)} train / {len(job.val.X)} val / {len(job.test.X)} test samples; "
                  f"compiled in {job.compile_s:.2f} s; run directory {_shown(run.path)}")
    if args.verbose:
        _verbose(model)
    for note in job.notes:
        progress.note(note)
    t1 = time.perf_counter()
    try:
        history = job.fit(progress)
        if run.tensorboard is not None:
            run.tensorboard.close()
    except TrainingDiverged as e:
        last = _last_epoch(run)
        e.checkpoint = f"{_shown(run.last)} (epoch {last})" if last is not None else None
        raise
    except KeyboardInterrupt:
        last = _last_epoch(run)
        print(f"interrupted; the last checkpoint is {_shown(run.last)} (epoch {last}); continue with "
              f"netc train {args.file or ''} --resume {_shown(run.path)}".replace("  ", " "), file=sys.stderr)
        return 130
    results = job.results()
    if args.verbose:        # Numba's compile (or cache load) of each function, at its first call
        for k, v in model.artifact.timings.items():
            if k.startswith("jit "):
                print(f"  {k:56s} {v * 1000:8.1f} ms", file=sys.stderr)
    results["stopped_epoch"], results["best_epoch"] = history.stopped_epoch, history.best_epoch
    # --json --quiet: the JSON alone on stdout (for `| python -m json.tool`); what else must be
    # said (plots, the saved model) goes to stderr
    text = sys.stderr if args.json and args.quiet else sys.stdout
    if text is sys.stdout:
        print(_summary(results))
        if history.summary():
            print(history.summary())
    if not args.quiet:
        first = history.epochs[0]["time"] if history.epochs else 0.0
        print(f"trained in {time.perf_counter() - t1:.2f} s (first epoch: {first:.2f} s); "
              f"run directory {_shown(run.path)}")
    if args.plot:
        parts = (job.train, job.val, job.test)
        paths = plot_run(run.path, model=model, data=_raw_points(model, parts))
        print("plots: " + ", ".join(_shown(p) for p in paths), file=text)
    if args.save:
        model.save(args.save)
        if not args.quiet:
            print(f"saved to {args.save}")
    if args.json:
        print(json.dumps(results))
    return 0


def _train_rank(args) -> int:
    """A data-parallel run's rank other than 0: the same job, nothing printed or written (rank 0
    prints, writes the run directory and checkpoints)."""
    sys.stdout = open(os.devnull, "w")
    if args.resume:
        job = session.resume_job(args.resume, args.file, epochs=args.epochs, given={
            "seed": args.seed, "batch": args.batch, "data": args.data, "label": args.label, "dtype": args.dtype,
            "no_pass": args.no_pass, "out": args.out}, write=False)
    else:
        spec = parse_data_arg(args.data, args.label) if args.data else None
        job = session.new_job(args.file, dtype=args.dtype, disabled=args.no_pass, run_dir=False,
                              overrides={"epochs": args.epochs, "seed": args.seed, "batch": args.batch, "data": spec},
                              device=args.device)
    job.run = None
    try:
        job.fit(Progress("quiet"))
    except distributed.MPIError:
        return 2            # a bad launch: rank 0 says why
    return 0


def _verbose(model) -> None:
    """--verbose: the time of each compiler stage, the rewrites that fired, the threads."""
    art = model.artifact
    print("start-up:", file=sys.stderr)
    print(f"  {'imports':28s} {IMPORTS_S * 1000:8.1f} ms", file=sys.stderr)
    print("compiler stages:", file=sys.stderr)
    for k, v in art.timings.items():
        print(f"  {k:28s} {v * 1000:8.1f} ms", file=sys.stderr)
    off = [n for n in PASS_NAMES if n not in art.pass_report]
    print(show.report_text(art.pass_report, off), file=sys.stderr)
    if art.threads:
        print(describe(art.threads), file=sys.stderr)


def cmd_graph(args) -> int:
    _check_passes(args.no_pass)
    if not args.output.lower().endswith((".svg", ".png", ".dot", ".gv")):
        raise NetcError.single(f"netc graph: -o {args.output}: the file must end in .svg, .png or .dot")
    source, file = read_source(args.file)
    checked = frontend.check(parse(source, file), args.no_pass)
    graphs = frontend.entry_graphs(checked)
    entry = args.entry or ("train_step" if args.train else "evaluate" if "evaluate" in graphs else "predict")
    if args.train and args.entry not in (None, "train_step"):
        raise NetcError.single(f"netc graph: --train draws train_step, not --entry {args.entry}")
    if entry not in graphs:
        raise NetcError.single(f"netc graph: the model has no {entry} entry point"
                               + (" (it has no loss)" if entry != "predict" else ""))
    G = graphs[entry]
    names = {n: name for name, n in checked.model.defs.items()}
    known = value_names(checked.program, args.no_pass)      # the names of `show --stage grad --math`
    names.update({n: known[k] for n, k in structural_keys(G).items() if k in known and n not in names})
    title = title_of(checked.model.name, entry)
    try:
        how = render_dot(to_dot(G, f"{checked.model.name} {entry}", names, source, title), args.output,
                         G, title, names, source)
    except (RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER
    print(f"wrote {args.output}" + (" (drawn with matplotlib: Graphviz's `dot` is not installed)"
                                    if how == "matplotlib" else ""))
    return 0


def cmd_cache(args) -> int:
    if args.action == "clear":
        print(f"removed {cache.clear()} entries from {cache.cache_dir()}")
        return 0
    items = cache.entries()
    total = sum(e["bytes"] for e in items)
    print(f"kernel cache {cache.cache_dir()}: {len(items)} entries, {total / 1e6:.1f} MB")
    for e in items:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["created"])) if e["created"] else "?"
        state = "ok" if e["ok"] else "DAMAGED (rebuilt on next use)"
        print(f"  {e['key']}  {e['model']:16s} {e['backend']:5s} {when}  {e['bytes'] / 1e3:8.1f} kB  "
              f"{'compiled' if e['compiled'] else 'source only':11s} {state}")
    return 0


def _shown(path: str) -> str:
    """A path relative to the working directory when it is below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _last_epoch(run):
    try:
        meta, _ = checkpoint.read(run.last)
        return meta.get("epoch")
    except checkpoint.CheckpointError:
        return None


def _raw_points(model, parts):
    """The samples of prepared splits, unstandardized again (for plots in the data's units),
    and the split of each (0 train, 1 val, 2 test)."""
    X = np.concatenate([d.X for d in parts]).astype(np.float64)
    y = np.concatenate([d.y for d in parts])
    if model.scaler is not None:
        X = X * model.scaler[1] + model.scaler[0]
    return X, y, np.repeat(np.arange(len(parts)), [len(d.X) for d in parts])


def _summary(results, splits=None) -> str:
    splits = splits or [s for s in ("train", "val", "test") if s in results]
    keys = list(dict.fromkeys(k for s in splits for k in results[s]))
    # columns of 10, wider when a value needs it: a space always separates two values
    w = max([10] + [len(fmt_metric(results[s][k])) + 1 for s in splits for k in results[s]])
    lines = [f"{'':12s}" + "".join(f"{s:>{w}s}" for s in splits)]
    for k in keys:
        lines.append(f"{k:12s}" + "".join(fmt_metric(results[s][k], w) if k in results[s] else f"{'':{w}s}"
                                         for s in splits))
    return "\n".join(lines)


def cmd_check(args) -> int:
    """Everything before code generation (the front end's check), and the train settings."""
    source, file = read_source(args.file)
    checked, settings = check_source(source, file, sets=args.set)
    ir = checked.model
    for w in ir.warnings:
        print(render(w, source), file=sys.stderr)
    trained = [p for p in ir.params if p.trainable]
    numbers = sum(int(np.prod(p.shape)) for p in trained)
    buffers = len(ir.params) - len(trained)         # batchnorm's running statistics, dropout's seed
    need = size_text(check_memory(checked, "float32", settings.batch))
    print(f"{args.file}: ok: model '{ir.name}', {numbers} params in {len(trained)} "
          f"tensor{'s' if len(trained) != 1 else ''}, "
          + (f"{buffers} buffer{'s' if buffers != 1 else ''}, " if buffers else "")
          + f"{len(ir.losses)} loss term{'s' if len(ir.losses) != 1 else ''}; a training step needs about {need} "
          f"(float32{', batch ' + str(settings.batch) if settings.batch else ', per sample'})")
    return 0


def cmd_show(args) -> int:
    _check_passes(args.no_pass)
    source, file = read_source(args.file)
    # the CUDA kernels' source needs numba-cuda's code generator only, no GPU
    if args.math:
        if args.stage != "grad":
            raise NetcError.single("netc show: --math goes with --stage grad")
        print(math_text(parse(source, file), args.no_pass))
        return 0
    print(show.stage(parse(source, file), args.stage, args.dtype, args.no_pass, device=args.device))
    return 0


def cmd_eval(args) -> int:
    model = netc.load(args.checkpoint)
    names = model.all_metrics()
    results = {"model": model.name, "checkpoint": checkpoint.resolve(args.checkpoint)}
    if args.data:
        ds = session.load_dataset(model, parse_data_arg(args.data, args.label))
        sets = {"data": model.prepare(ds.X, ds.y, ds.name)}
    else:
        ds = session.load_dataset(model)
        parts = session.prepare_splits(model, session.split(model, ds))
        sets = {k: d for k, d in zip(("train", "val", "test"), parts) if len(d.X)}
    for k, d in sets.items():
        results[k] = model.metrics_of(d, names)
    cm_split = next(k for k in ("data", "test", "val", "train") if k in sets)
    if model.is_classifier():
        d = sets[cm_split]
        cm = model.confusion_matrix_of(d)
        classes = model.classes or [str(i) for i in range(len(cm))]
        results["confusion_matrix"] = {"split": cm_split, "classes": classes, "matrix": cm.tolist()}
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"{model.name}: {_shown(results['checkpoint'])}, {sum(len(d.X) for d in sets.values())} samples")
    print(_summary(results, splits=list(sets)))
    if "confusion_matrix" in results:
        print(f"\nconfusion matrix ({cm_split}; rows: true class, columns: predicted class)")
        print(_matrix(results["confusion_matrix"]["classes"], results["confusion_matrix"]["matrix"]))
    return 0


def _matrix(classes, rows) -> str:
    names = [str(c)[:10] for c in classes]
    w = max([len(n) for n in names] + [len(str(v)) for r in rows for v in r] + [4])
    lines = [" " * (w + 2) + " ".join(f"{n:>{w}}" for n in names)]
    for n, r in zip(names, rows):
        lines.append(f"{n:>{w}}  " + " ".join(f"{v:>{w}}" for v in r))
    return "\n".join(lines)


def cmd_predict(args) -> int:
    model = netc.load(args.checkpoint)
    if not model.artifact.has_predict:
        raise NetcError.single(f"model '{model.name}' has no output to predict")
    spec = parse_data_arg(args.data, args.label)
    trained_on = model.settings.data
    known = trained_on["kwargs"].get("label") if isinstance(trained_on, dict) and trained_on.get("source") == "csv" else None
    X = read_features(spec, int(np.prod(model.ir.input_shape)), known)
    if args.output:
        with atomic_open(args.output, "w", newline="") as f:
            n = write_predictions(model, X, f)
        print(f"wrote {n} predictions to {args.output}")
    else:
        write_predictions(model, X, sys.stdout)
    return 0


def cmd_export(args) -> int:
    model = netc.load(args.checkpoint)
    model.export_onnx(args.output)
    shape = lambda s: "[batch" + "".join(f", {d}" for d in s) + "]"
    out = model.ir.graph.shape(model.ir.output)[1:] if model.ir.output is not None else ()
    print(f"wrote {args.output} (ONNX opset {export_onnx.OPSET}, IR version {export_onnx.IR_VERSION}): "
          f"{model.ir.input_name} {shape(model.ir.input_shape)} -> {model.ir.output_name} {shape(out)}"
          + ("; standardization folded in" if model.scaler is not None else "")
          + (f"; classes {', '.join(model.classes)}" if model.classes else ""))
    return 0


def cmd_summary(args) -> int:
    source, file = read_source(args.file)
    checked = check_source(source, file)[0]
    print(summarize(checked.train.forward, checked.train.graph, checked.model, checked.program).table())
    return 0


def cmd_plot(args) -> int:
    if not os.path.isdir(args.run):
        raise NetcError.single(f"{args.run}: no such run directory")
    paths = plot_run(args.run, args.output)
    for p in paths:
        print(_shown(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
