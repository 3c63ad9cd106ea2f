"""The ``tnc`` command line: ``check`` and ``compile`` (einsum and PyTorch targets)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tnc.cli.files import FileError, read_source, write_output
from tnc.errors import TncError, UsageError


def _size_binding(text: str) -> tuple[str, int]:
    """``N=32``; zero is a valid value (a padding), whether it is valid for the size the file says."""
    name, _, value = text.partition("=")
    if not name or not value.isascii() or not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=INTEGER (0 or more), got {text!r}")
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
    derive.add_argument("--wrt", required=True, metavar="A", help="the input or param to differentiate with respect to")
    derive.add_argument("--of", metavar="T", help="the tensor to differentiate (default: the file's single output)")
    seeds = derive.add_mutually_exclusive_group()
    seeds.add_argument("--vjp", metavar="V", help="contract with the seed V over T's legs (a gradient)")
    seeds.add_argument("--jvp", metavar="U", help="contract with the tangent U over A's legs")
    derive.add_argument("-o", "--output", metavar="OUT", help="write here (atomically) instead of standard output")
    derive.add_argument("--size", action="append", type=_size_binding, default=[], metavar="N=VALUE", help="bind a free size")
    return parser


def _load(args: argparse.Namespace):
    from tnc.frontend import compile_source

    source = read_source(args.file)
    return compile_source(source.text, source.name, dict(args.size))


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
        from tnc.cost import cost_text

        write_output(cost_text(program), None)
    elif args.command == "simplify":
        from tnc.codegen.tn import to_tn
        from tnc.passes.simplify import explain, simplify

        log = simplify(program)
        write_output(to_tn(program, explain(log, program.source.name) if args.explain else None), args.output)
    elif args.command == "derive":
        from tnc.codegen.tn import to_tn
        from tnc.passes.derive import DerivativeError, derive_program

        try:
            name = derive_program(program, args.wrt, args.of, args.vjp, args.jvp)
        except DerivativeError as error:
            raise UsageError(str(error)) from None
        what = f"vjp with seed {args.vjp}" if args.vjp else f"jvp with tangent {args.jvp}" if args.jvp else "Jacobian"
        header = f"{name}: the {what} of {args.of or 'the output'} with respect to {args.wrt}, derived by tnc from {program.source.name}"
        write_output(to_tn(program, header), args.output)
    else:
        compile_program(program, args)


def draw_program(program, args: argparse.Namespace) -> None:
    """``tnc draw``: the suffix of ``-o`` picks the format; the file is written atomically."""
    import os
    import tempfile

    from tnc.draw import render, to_dot

    suffix = Path(args.output).suffix.lower()
    if suffix not in (".svg", ".png", ".dot"):
        raise UsageError(f"-o {args.output}: the diagram is written as .svg, .png or .dot")
    if args.simplify:
        from tnc.passes.simplify import simplify

        simplify(program)
    if suffix == ".dot":
        write_output(to_dot(program, args.term), args.output)
        return
    target = Path(args.output)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent if str(target.parent) else ".")
    os.close(fd)
    try:
        render(program, temporary, args.term)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except ValueError as error:
        raise UsageError(str(error)) from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def compile_program(program, args: argparse.Namespace) -> None:
    """``tnc compile``: simplify (unless --no-simplify), then generate the chosen target."""
    if not args.no_simplify:
        from tnc.passes.simplify import simplify

        simplify(program)
    if args.target == "einsum":
        from tnc.codegen.einsum import to_json, to_text

        write_output(to_json(program) if args.format == "json" else to_text(program), args.output)
    else:
        from tnc.codegen.torch_module import to_torch_source

        write_output(to_torch_source(program, _stem(args.file)), args.output)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args)
    except TncError as error:
        print(error, file=sys.stderr)
        return 1
    except FileError as error:
        print(error, file=sys.stderr)
        return 1
    except UsageError as error:
        parser.error(str(error))
    except BrokenPipeError:
        return 0
    except Exception as error:  # noqa: BLE001 - the user gets a message, never a traceback
        if os.environ.get("TNC_DEBUG"):
            raise
        print(f"tnc: internal error: {type(error).__name__}: {error} (set TNC_DEBUG=1 for a traceback)", file=sys.stderr)
        return 70
    return 0


if __name__ == "__main__":
    sys.exit(main())
