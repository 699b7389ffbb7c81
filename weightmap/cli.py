"""The ``weightmap`` command. Every error becomes one line on stderr and a non-zero exit."""
from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from .errors import CoverageError, WeightmapError, printable
from .spelling import CLI, spelled


def _parser() -> argparse.ArgumentParser:
    from .emit import readback
    p = argparse.ArgumentParser(prog="weightmap", description="Move trained weights between "
                                "differently-built models and frameworks.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")
    ins = sub.add_parser("inspect", help="list a checkpoint's layers and tensors (reads no data)")
    ins.add_argument("source", help="checkpoint file/folder, or model.py[:NAME]")
    ins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _limit_option(ins)
    po = sub.add_parser("port", help="port a checkpoint's weights into a different target model")
    po.add_argument("source", help="source checkpoint, or model.py[:NAME]")
    po.add_argument("--to", required=True, dest="target",
                    help="target: model.py[:NAME], a model file or a checkpoint used as template")
    po.add_argument("--out", help="output file (default: SOURCE_to_TARGET with the target's "
                                  "format suffix)")
    po.add_argument("--manifest", help="manifest path (default: OUT's name + .manifest.json)")
    po.add_argument("--rules", help="rules file (YAML or TOML): rename, ignore, pair, expect")
    po.add_argument("--freeze", default="none",
                    help="none | transferred | until:LAYER | first:N (default none)")
    po.add_argument("--lr-scale", action="append", default=[], metavar="GROUP=F",
                    help="learning-rate scale: transferred=F, new=F, decay=F (repeatable)")
    po.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    po.add_argument("--save-plan", metavar="F", help="write the plan as editable JSON")
    po.add_argument("--plan", metavar="F", help="apply a saved (possibly edited) plan")
    po.add_argument("--fail-on-nonfinite", action="store_true",
                    help="refuse the port (no output) if a written tensor holds NaN or Inf")
    po.add_argument("--force", action="store_true", help="replace an existing output file")
    po.add_argument("--json", action="store_true", help="print the report as JSON")
    po.add_argument("--verbose", "-v", action="store_true", help="list every layer in the report")
    po.add_argument("--quiet", "-q", action="store_true",
                    help="no progress line and no report (errors still go to stderr)")
    po.add_argument("--new-values", choices=("construct", "reset"), default="construct",
                    help="tensors that stay new: values of a normal construction of the target "
                         "file (default), or each module reset alone (never builds the whole "
                         "target)")
    po.add_argument("--shard-size", metavar="SIZE",
                    help="safetensors output larger than SIZE (e.g. 2GB, 500MB, 4GiB) is written "
                         "as shards plus a .safetensors.index.json, like the model hubs")
    po.add_argument("--no-direct-io", action="store_true",
                    help="write a big safetensors output through the page cache (default: past "
                         "it, where the file system allows it)")
    po.add_argument("--read-back", choices=readback.MODES, default=readback.MODES[0],
                    help="what the check of an output written past the page cache digests: "
                         "each part as the disk was given it, then the fsynced file re-parsed "
                         "(default), or every byte also re-read from the disk (a second pass "
                         "over it)")
    _digest_option(po)
    po.add_argument("--report", metavar="HTML",
                    help="also write the mapping report as one self-contained HTML page")
    po.add_argument("--min-coverage", metavar="F",
                    help="fail (exit 11, nothing written) if less than this share (0..1) of "
                         "the target's elements is carried over")
    po.add_argument("--strict", action="store_true",
                    help="fail (exit 11, nothing written) unless every target tensor is carried "
                         "over or ignored by a rule, and every source tensor used or ignored")
    po.add_argument("--verify", nargs="?", const="fail", metavar="warn",
                    help="run the source and the written target on one probe and compare "
                         "outputs and paired layers before the output is put in place; a "
                         "failure leaves no output (exit 10); --verify=warn keeps it and "
                         "reports")
    _verify_options(po)
    _limit_option(po)
    _plan_options(po)
    ve = sub.add_parser("verify", help="run a source and its ported target on one probe and "
                                       "compare them, naming the first layer that diverges")
    ve.add_argument("source", help="source checkpoint, or model.py[:NAME]")
    ve.add_argument("--to", required=True, dest="target",
                    help="target: model.py[:NAME] or a model file that holds its architecture")
    ve.add_argument("--weights", required=True,
                    help="the port's output (its manifest beside it says which layers pair)")
    ve.add_argument("--json", action="store_true", help="print the result as JSON")
    ve.add_argument("--report", metavar="HTML",
                    help="also draw the port's manifest with this verification's figures as "
                         "one self-contained HTML page")
    ve.add_argument("--force", action="store_true", help="replace an existing --report page")
    _verify_options(ve)
    rep = sub.add_parser("report", help="draw a port's manifest as a self-contained HTML page")
    rep.add_argument("manifest", help="the .manifest.json a port wrote beside its output")
    rep.add_argument("--html", required=True, metavar="OUT", help="the page to write")
    rep.add_argument("--force", action="store_true", help="replace an existing page")
    _convert_parser(sub)
    _migrate_parser(sub)
    return p


def _convert_parser(sub) -> None:
    co = sub.add_parser("convert", help="rewrite one checkpoint (same architecture): renames, "
                                        "prefixes, keep/drop, dtype casts, shards")
    co.add_argument("source", help="source checkpoint")
    co.add_argument("--out", required=True, help="output file: .safetensors or .pt")
    co.add_argument("--manifest", help="manifest path (default: OUT's name + .manifest.json)")
    co.add_argument("--rules", help="rules file (YAML or TOML): its rename entries rename "
                                    "tensors, its ignore.source patterns drop them")
    co.add_argument("--strip-prefix", action="append", nargs="?", const=True, default=[],
                    metavar="PREFIX", help="strip PREFIX from every name that starts with it; "
                    "without PREFIX the wrapper prefixes every name carries (module., "
                    "_orig_mod., model.) (repeatable)")
    co.add_argument("--keep", action="append", default=[], metavar="GLOB",
                    help="write only tensors whose name matches GLOB (repeatable)")
    co.add_argument("--drop", action="append", default=[], metavar="GLOB",
                    help="leave out tensors whose name matches GLOB (repeatable)")
    co.add_argument("--cast", choices=("fp32", "fp16", "bf16"),
                    help="write every floating tensor in this dtype (round to nearest even; "
                         "the manifest counts overflows and values become subnormal or zero)")
    co.add_argument("--container", metavar="KEY",
                    help="the checkpoint key holding the weights (default: state_dict, model, "
                         "...; optimizer states are never taken unless named here)")
    co.add_argument("--shard-size", metavar="SIZE",
                    help="safetensors output larger than SIZE is written as shards plus an "
                         "index, like the model hubs")
    co.add_argument("--fail-on-nonfinite", action="store_true",
                    help="refuse (no output) if a written tensor holds NaN or Inf")
    _digest_option(co)
    co.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    co.add_argument("--force", action="store_true", help="replace an existing output file")
    co.add_argument("--json", action="store_true", help="print the report as JSON")
    co.add_argument("--quiet", "-q", action="store_true", help="no progress line, no report")
    _limit_option(co)


def _migrate_parser(sub) -> None:
    mi = sub.add_parser("migrate", help="run the ports and converts of a migration spec "
                                        "(YAML/TOML), locally or on Ray")
    mi.add_argument("spec", help="migration spec file (docs/migrate.md)")
    mi.add_argument("--jobs", "-j", type=int, metavar="N",
                    help="jobs at a time (default: one per core, fewer if memory is short)")
    mi.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="local worker processes (default) or Ray tasks")
    mi.add_argument("--ray-address", metavar="ADDR",
                    help="the Ray cluster to run on (default: RAY_ADDRESS, else a local one)")
    mi.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                    help="skip jobs whose output is up to date (default on)")
    mi.add_argument("--force", action="store_true",
                    help="run every job again, replacing existing outputs")
    mi.add_argument("--json", action="store_true", help="print the summary as JSON")
    mi.add_argument("--quiet", "-q", action="store_true", help="no progress line, no table")


def _verify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source-model", metavar="FILE.py[:NAME]",
                        help="the file that builds the source model, when the source is "
                             "weights only (a state dict, safetensors): the plan uses its "
                             "layers' facts (epsilons, norm kinds) and execution order, and "
                             "verification runs it")
    parser.add_argument("--tol", type=float, default=None, metavar="T",
                        help="relative tolerance of the comparison (default 1e-4)")


def _plan_options(parser: argparse.ArgumentParser) -> None:
    """``--NAME VALUE`` (repeatable) for each plan option with a command-line spelling
    (``options.PlanOptions``); the option's check reads the list of texts."""
    from .options import PlanOptions
    for spec in PlanOptions.specs():
        if spec.metadata["metavar"]:
            parser.add_argument("--" + spec.name.replace("_", "-"), dest=f"option_{spec.name}",
                                action="append", metavar=spec.metadata["metavar"],
                                help=spec.metadata["doc"].replace("%", "%%"))


def _digest_option(parser: argparse.ArgumentParser) -> None:
    """``--digest`` of the commands that write (port, convert)."""
    from .emit.readback import ALGORITHMS
    parser.add_argument("--digest", choices=ALGORITHMS, default=ALGORITHMS[0],
                        help="each written tensor's digest in the manifest: SHA-256 (default) "
                             "or BLAKE3 (faster; needs the blake3 package: pip install "
                             "'weightmap[fast]')")


def _limit_option(parser: argparse.ArgumentParser) -> None:
    """The read options of a checkpoint given on the command line (``_read_options``)."""
    parser.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                        help="change a reader's cap for a trusted file (repeatable), e.g. "
                             "max_header_bytes=67108864; an unknown NAME lists the valid ones")
    parser.add_argument("--opaque-globals", action="store_true",
                        help="read the tensors of a checkpoint that also pickles other "
                             "objects (a Lightning checkpoint's numpy scalars, an argparse "
                             "Namespace), which become inert placeholders; nothing is imported "
                             "or run")


def _read_options(args: argparse.Namespace) -> dict:
    """``--limit`` and ``--opaque-globals`` as read options for a checkpoint."""
    from .reading.limits import parse_limits
    return {**parse_limits(args.limit), **({"opaque_globals": True} if args.opaque_globals
                                           else {})}


def _port(args: argparse.Namespace) -> int:
    from .api import port
    from .io.atomic import check_output
    from .reading.limits import read_checkpoint
    read_options = _read_options(args)
    if args.report:      # refused before anything is written, like the output itself
        check_output(Path(args.report), force=args.force, named_by="report")
    source, target = (read_checkpoint(text, read_options)
                      for text in (args.source, args.target))
    options = {k[len("option_"):]: v for k, v in vars(args).items()
               if k.startswith("option_") and v is not None}
    try:
        rep = port(source, target, args.out, manifest=args.manifest, rules=args.rules,
                   freeze=args.freeze, lr_scale=args.lr_scale, plan=args.plan,
                   dry_run=args.dry_run, force=args.force,
                   fail_on_nonfinite=args.fail_on_nonfinite, shard_size=args.shard_size,
                   progress=False if args.quiet else None, new_values=args.new_values,
                   direct_io=False if args.no_direct_io else None, read_back=args.read_back,
                   digest=args.digest,
                   min_coverage=args.min_coverage, strict=args.strict,
                   save_plan=args.save_plan, verify=_verify_flag(args.verify),
                   source_model=args.source_model, verify_tol=args.tol, **options)
    except CoverageError as exc:      # a dry run still shows (and saves) what it planned
        if args.dry_run and getattr(exc, "report", None) is not None:
            _show(args, exc.report)
        raise
    _show(args, rep)
    return 0


def _show(args: argparse.Namespace, rep) -> None:
    from .emit.report import render
    if args.report:
        from .emit import report_html
        report_html.write(rep.manifest, args.report, force=args.force, named_by="report")
    if args.json:
        print(json.dumps(rep.to_dict(), indent=1))
    elif not args.quiet:
        if args.dry_run:
            print(_render_plan(rep.plan))
        print(render(rep, verbose=args.verbose))


def _verify_flag(value: str | None) -> bool | str:
    from .errors import UsageError
    if value not in (None, "fail", "warn"):
        raise UsageError(f"--verify={value}; write --verify or --verify=warn")
    return {None: False, "fail": True, "warn": "warn"}[value]


def _verify(args: argparse.Namespace) -> int:
    from .emit.dispatch import manifest_path_for
    from .equivalence import DEFAULT_TOL, verify
    from .equivalence.result import render
    from .errors import UsageError, VerifyError
    manifest = manifest_path_for(Path(args.weights))
    if args.report:              # refused before anything runs, like a port's --report
        from .io.atomic import check_output
        if not manifest.is_file():
            raise UsageError(f"--report draws the port's manifest, and there is none beside "
                             f"{Path(args.weights).name} ({manifest.name})")
        check_output(Path(args.report), force=args.force, inputs=(manifest,),
                     named_by="report")
    result = verify(args.source, args.target, args.weights, source_model=args.source_model,
                    tol=DEFAULT_TOL if args.tol is None else args.tol)
    print(json.dumps(result.to_dict(), indent=1) if args.json else render(result))
    if args.report:
        from .emit import report_html
        drawn = dict(report_html.load_manifest(manifest), verify=result.to_dict())
        report_html.write(drawn, args.report, force=args.force, inputs=(manifest,),
                          named_by="report")
        if not args.json:
            print(f"wrote {args.report}")
    return 0 if result.passed else VerifyError.exit_code


def _render_plan(plan) -> str:
    lines = [f"plan: {plan.source.get('path')} ({plan.source.get('format')}) -> "
             f"{plan.target.get('path')} ({plan.target.get('format')})"]
    for t in plan.tensors:
        src = ", ".join(t.sources) if t.sources else "-"
        steps = " | ".join(s.describe() for s in t.steps)
        lines.append(f"  {t.target} {list(t.shape)} {t.status} <- {src}"
                     + (f"  [{steps}]" if steps else ""))
    return "\n".join(printable(line) for line in lines)     # names come from the files


def _inspect(args: argparse.Namespace) -> int:
    from .emit.report_inspect import render
    from .reading.read import read
    desc = read(args.source, **_read_options(args)).describe()
    if args.json:
        print(json.dumps(desc, indent=2))
    else:
        print(render(desc))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .emit.report import render_convert
    from .surgery import convert
    rep = convert(args.source, args.out, manifest=args.manifest, rules=args.rules,
                  strip_prefix=args.strip_prefix, keep=args.keep, drop=args.drop,
                  cast=args.cast, container=args.container, shard_size=args.shard_size,
                  force=args.force, dry_run=args.dry_run, digest=args.digest,
                  fail_on_nonfinite=args.fail_on_nonfinite,
                  progress=False if args.quiet else None,
                  read_options=_read_options(args))
    if args.json:
        print(json.dumps(rep.to_dict(), indent=1))
    elif not args.quiet:
        if args.dry_run:
            print(_render_plan(rep.plan))
        print(render_convert(rep))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from .migration import migrate, render
    summary = migrate(args.spec, jobs=args.jobs, executor=args.executor,
                      ray_address=args.ray_address, resume=args.resume, force=args.force,
                      progress=False if args.quiet else None)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=1))
    elif not args.quiet:
        print(render(summary))
    summary.check()
    return 0


def _report(args: argparse.Namespace) -> int:
    from .emit import report_html
    manifest = report_html.load_manifest(args.manifest)
    out = report_html.write(manifest, args.html, force=args.force, inputs=(Path(args.manifest),),
                            named_by="html")
    print(f"wrote {out}")
    return 0


COMMANDS = {"inspect": _inspect, "port": _port, "verify": _verify, "report": _report,
            "convert": _convert, "migrate": _migrate}
# what `timeout`, `docker stop` and a closed terminal send: handled as Ctrl-C is, so the port
# cleans up what it was writing and exits 128 + the signal's number
_TERMINATING = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def _interrupt(signo: int, _frame) -> None:
    raise Interrupted(signo)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the main thread is, like Ctrl-C's KeyboardInterrupt."""

    def __init__(self, signo: int) -> None:
        super().__init__(signo)
        self.signo = signo


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__
        print(__version__)
        return 0
    if not args.command:
        parser.print_help()
        return 2
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signo: signal.signal(signo, _interrupt) for signo in _TERMINATING}
    try:
        with spelled(CLI):       # messages name options as this command line writes them
            return COMMANDS[args.command](args)
    except WeightmapError as exc:
        print(f"weightmap: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        signo = getattr(exc, "signo", signal.SIGINT)
        print(f"weightmap: interrupted by {signal.Signals(signo).name}", file=sys.stderr)
        return 128 + signo
    except BrokenPipeError:
        return 0
    except MemoryError:
        print("weightmap: error: out of memory", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug of ours: one line for the user, the trace on request
        if os.environ.get("WEIGHTMAP_DEBUG"):
            raise
        text = printable(" ".join(str(exc).split()))
        print(f"weightmap: internal error: {type(exc).__name__}: {text} (this is a bug in "
              f"weightmap; rerun with WEIGHTMAP_DEBUG=1 for the trace and report it)",
              file=sys.stderr)
        return 70
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)


def run() -> None:
    """The command's entry point: ``main()``, then a fast exit. Everything is written, fsynced
    and renamed into place by then; tearing the interpreter down module by module (half a second
    once torch is loaded) serves nobody. stdout and stderr are flushed first.

    The cyclic garbage collector is off for the command: importing torch creates hundreds of
    thousands of objects, and the full collections that set off walk them all for nothing (a
    one-shot process frees its memory by exiting; reference counting still frees everything
    that is not a cycle). Measured on the benchmark's port: 0.2-0.3 s of CPU. Library calls
    (``weightmap.port``) leave the collector alone."""
    gc.disable()
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
