"""The ``tnc`` command line: ``check`` and ``compile`` (einsum and PyTorch targets)."""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from tnc.cli.files import FileError, read_source, write_output
from tnc.errors import TncError, UsageError
from tnc.limits import MAX_VALUE


def _size_binding(text: str) -> tuple[str, int]:
    """``N=32``; zero is a valid value (a padding), whether it is valid for the size the file says."""
    name, _, value = text.partition("=")
    if not name or not re.fullmatch("[0-9]{1,19}", value) or not 0 <= int(value) <= MAX_VALUE:
        raise argparse.ArgumentTypeError(f"expected NAME=INTEGER (0 to 2**62), got {text!r}")
    return name, int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tnc", description="A symbolic tensor-network compiler.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="validate a .tn file and print every tensor with its legs and sizes")
    check.add_argument("file", metavar="FILE", help="a .tn file, or - for standard input")
    check.add_argument("--size", action="append", type=_size_binding, default=[], metavar="N=VALUE", help="bind a free size")

    compile_ = commands.add_parser("compile", help="generate einsum equations or a standalone PyTorch module")
    compile_.add_argument("file", metavar="FILE", help="a .tn file, or - for standard input")
    compile_.add_argument("--target", choices=["einsum", "torch"], required=True)
    compile_.add_argument("--format", choices=["text", "json"], default="text", help="einsum target only")
    compile_.add_argument("-o", "--output", metavar="OUT", help="write here (atomically) instead of standard output")
    compile_.add_argument("--size", action="append", type=_size_binding, default=[], metavar="N=VALUE", help="bind a free size")
    compile_.add_argument("--no-simplify", action="store_true", help="compile the network as written, without the rewrite passes")
    compile_.add_argument("--shard", metavar="N", help="torch target: the free size N is split across the ranks of a torch.distributed group")

    simplify = commands.add_parser("simplify", help="apply the rewrite passes and print the resulting .tn file")
    simplify.add_argument("file", metavar="FILE", help="a .tn file, or - for standard input")
    simplify.add_argument("--explain", action="store_true", help="list each rule applied, where, and why its condition held")
    simplify.add_argument("-o", "--output", metavar="OUT", help="write here (atomically) instead of standard output")
    simplify.add_argument("--size", action="append", type=_size_binding, default=[], metavar="N=VALUE", help="bind a free size")

    cost = commands.add_parser("cost", help="FLOPs and memory of every term, one-shot and planned, before and after simplification")
    cost.add_argument("file", metavar="FILE", help="a .tn file, or - for standard input")
    cost.add_argument("--size", action="append", type=_size_binding, default=[], metavar="N=VALUE", help="bind a free size")

    draw = commands.add_parser("draw", help="draw the diagram of each output term as SVG, PNG or DOT")
    draw.add_argument("file", metavar="FILE", help="a .tn file, or - for standard input")
    draw.add_argument("-o", "--output", metavar="OUT", required=True, help="OUT.svg, OUT.png or OUT.dot")
    draw.add_argument("--term", type=int, metavar="K", help="only term K (from 1) of each output")
    draw.add_argument("--no-simplify", action="store_true", help="draw the network as written (the default)")
    draw.add_argument("--simplify", action="store_true", help="draw the network after the rewrite passes")
    draw.add_argument("--size", action="append", type=_size_binding, default=[], metavar="N=VALUE", help="bind a free size")

    derive = commands.add_parser("derive", help="differentiate a network: Jacobian, VJP or JVP, as a .tn file")
    derive.add_argument("file", metavar="FILE", help="a .tn file, or - for standard input")
    derive.add_argument("--wrt", required=True, metavar="A", help="the input or param to differentiate with respect to (A,B,...: every gradient at once)")
    derive.add_argument("--of", metavar="T", help="the tensor to differentiate (default: the file's single output)")
    seeds = derive.add_mutually_exclusive_group()
    seeds.add_argument("--vjp", metavar="V", help="contract with the seed V over T's legs (a gradient)")
    seeds.add_argument("--jvp", metavar="U", help="contract with the tangent U over A's legs")
    derive.add_argument("-o", "--output", metavar="OUT", help="write here (atomically) instead of standard output")
    derive.add_argument("--size", action="append", type=_size_binding, default=[], metavar="N=VALUE", help="bind a free size")
    for command in commands.choices.values():  # every command checks its file
        command.add_argument("--Werror", action="store_true", help="treat warnings as errors (exit status 1)")
    return parser


def _load(args: argparse.Namespace):
    """The checked program; its warnings go to standard error, or are errors with ``--Werror``."""
    from tnc.frontend import compile_source

    source = read_source(args.file)
    program = compile_source(source.text, source.name, dict(args.size))
    if program.warnings and args.Werror:
        raise TncError(program.source, [replace(w, severity="error") for w in program.warnings])
    if program.warnings:
        print(TncError(program.source, program.warnings), file=sys.stderr)
    return program


def _stem(path: str) -> str:
    return "network" if path == "-" else Path(path).stem


def run(args: argparse.Namespace) -> None:
    program = _load(args)
    if args.command == "check":
        from tnc.report import describe

        write_output(describe(program), None)
    elif args.command == "draw":
        draw_program(program, args)
    elif args.command == "cost":
        from tnc.cost.report import cost_text

        write_output(cost_text(program), None)
    elif args.command == "simplify":
        from tnc.codegen.tn import to_tn
        from tnc.passes.simplify import explain, simplify

        log = simplify(program)
        report = explain(log, program.source.name) if args.explain else None
        write_output(to_tn(program, report), args.output)
        if report is not None and args.output is not None:
            print(report, file=sys.stderr)  # the file has it as its header; the terminal too
    elif args.command == "derive":
        from tnc.codegen.tn import to_tn
        from tnc.frontend.parser import is_tensor_name
        from tnc.passes.derive import DerivativeError, derive_program

        for option, value in (("--vjp", args.vjp), ("--jvp", args.jvp)):
            if value is not None and not is_tensor_name(value):
                raise UsageError(f"{option} {value}: a seed must be a tensor name (letters, digits, _ and trailing primes, not a keyword)")
        try:
            wrt = args.wrt.split(",") if "," in args.wrt else args.wrt
            names = derive_program(program, wrt, args.of, args.vjp, args.jvp)
        except DerivativeError as error:
            raise UsageError(str(error)) from None
        what = f"vjp with seed {args.vjp}" if args.vjp else f"jvp with tangent {args.jvp}" if args.jvp else "Jacobian"
        name = names if isinstance(names, str) else ", ".join(names)
        header = f"{name}: the {what} of {args.of or 'the output'} with respect to {args.wrt}, derived by tnc from {program.source.name}"
        write_output(to_tn(program, header), args.output)
    else:
        compile_program(program, args)


def draw_program(program, args: argparse.Namespace) -> None:
    """``tnc draw``: the suffix of ``-o`` picks the format."""
    from tnc.draw import render, to_dot

    suffix = Path(args.output).suffix.lower()
    if suffix not in (".svg", ".png", ".dot"):
        raise UsageError(f"-o {args.output}: the diagram is written as .svg, .png or .dot")
    if args.simplify:
        from tnc.passes.simplify import simplify

        simplify(program)
    most = max((len(program.definitions[name].terms) for name in program.outputs), default=0)
    if args.term is not None and not 1 <= args.term <= most:
        numbered = f"the terms are numbered from 1 to {most}" if most else "the outputs have no terms"
        raise UsageError(f"--term {args.term}: there is no term to draw with number {args.term}; {numbered}")
    try:
        data = to_dot(program, args.term) if suffix == ".dot" else render(program, suffix[1:], args.term)
    except ValueError as error:
        raise UsageError(str(error)) from None
    write_output(data, args.output, protect=args.file)


def compile_program(program, args: argparse.Namespace) -> None:
    """``tnc compile``: simplify (unless --no-simplify), then generate the chosen target."""
    if not args.no_simplify:
        from tnc.passes.simplify import simplify

        simplify(program)
    if args.shard and args.target != "torch":
        raise UsageError("--shard: data-parallel code is generated for --target torch only")
    if args.target == "einsum":
        from tnc.codegen.einsum import to_json, to_text

        write_output(to_json(program) if args.format == "json" else to_text(program), args.output, protect=args.file)
    else:
        from tnc.codegen.torch_module import to_torch_source

        write_output(to_torch_source(program, _stem(args.file), shard=args.shard), args.output, protect=args.file)


RECURSION_LIMIT = 60_000  # passes recurse along chains of definitions (at most MAX_CHAIN deep)


class _Terminated(Exception):
    """SIGTERM, raised where the program is, so that ``finally`` removes temporary files."""


def _terminate(signum, frame) -> None:
    raise _Terminated


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so the exit does not fail again flushing it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (captured in tests)
        pass


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status is 0, 1 (an error in a file), 2 (usage), 130 (Ctrl-C),
    143 (SIGTERM) or 70 (an internal error, a bug in tnc)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, RECURSION_LIMIT))
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    try:
        run(args)
        sys.stdout.flush()
    except (TncError, FileError) as error:
        print(error, file=sys.stderr)
        return 1
    except UsageError as error:
        parser.error(str(error))
    except BrokenPipeError:  # the reader went away (`tnc ... | head -1`): nothing more to say
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except _Terminated:
        return 143
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT):
            return _internal(error)
        _silence_stdout()
        print(f"<stdout>: error: cannot write standard output: {error.strerror or error}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - the user gets a message, never a traceback
        return _internal(error)
    finally:
        sys.setrecursionlimit(limit)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _internal(error: Exception) -> int:
    if os.environ.get("TNC_DEBUG"):
        raise error
    print(f"tnc: internal error: {type(error).__name__}: {error} (set TNC_DEBUG=1 for a traceback)", file=sys.stderr)
    return 70


if __name__ == "__main__":
    sys.exit(main())
