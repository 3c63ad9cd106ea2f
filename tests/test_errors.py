"""Bad `.tn` inputs through the command line: positioned messages, exit status, no traceback.

Every case in ``CASES`` is written to a file and run through ``tnc.cli.main.main``. It must exit
with status 1 and print ``FILE:LINE:COL: error: MESSAGE``, the offending source line and a caret
under the column (contract §5). Cases that name two places also check the ``note:`` line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tnc.cli.main import main
from tnc.errors import WIDTH

ROOT = Path(__file__).resolve().parents[1]

HEADER = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<column>\d+): (?P<kind>error|note): (?P<message>.*)$")


@dataclass
class Reported:
    kind: str
    line: int
    column: int
    message: str
    excerpt: str
    caret: str


def parse_diagnostics(stderr: str, filename: str) -> list[Reported]:
    """Split stderr into diagnostics; every header must be followed by the line and a caret."""
    lines = stderr.rstrip("\n").split("\n")
    found = []
    position = 0
    while position < len(lines):
        match = HEADER.match(lines[position])
        assert match, f"not a diagnostic header: {lines[position]!r}\n{stderr}"
        assert match["file"] == filename, stderr
        assert position + 2 < len(lines), f"a diagnostic without its excerpt:\n{stderr}"
        excerpt, caret = lines[position + 1], lines[position + 2]
        found.append(Reported(match["kind"], int(match["line"]), int(match["column"]), match["message"], excerpt, caret))
        position += 3
    return found


def check_excerpt(source: str, reported: Reported) -> None:
    """The excerpt is the source line (indented by four); the caret sits under the column."""
    text = source.split("\n")[reported.line - 1].replace("\t", " ")  # the parser's lines
    if len(text) > WIDTH:  # a window of the line around the column, "..." where it is cut
        assert reported.excerpt.startswith("    ")
        assert reported.excerpt[4:].removeprefix("...").removesuffix("...") in text
        assert len(reported.excerpt) <= 4 + WIDTH + 6 and "^" in reported.caret
        return
    assert reported.excerpt == "    " + text
    assert re.fullmatch(r" {4}" + " " * (reported.column - 1) + r"\^~*", reported.caret), (reported.caret, reported.column)
    # the caret's underline never runs past the end of the line
    assert len(reported.caret) <= 4 + max(len(text), reported.column)


def run_cli(tmp_path: Path, capsys, source: str, *args: str, name: str = "bad.tn") -> tuple[int, str, str, str]:
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    command = list(args) if args else ["check"]
    try:
        status = main([command[0], str(path), *command[1:]])
    except SystemExit as exit:  # argparse usage errors
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err, str(path)


def case(id: str, source: str, message: str, line: int, column: int, note: tuple[str, int, int] | None = None, args=()):
    return pytest.param(source, message, line, column, note, tuple(args), id=id)


# (source, message fragment, line, column, optional note (fragment, line, column), CLI arguments)
CASES = [
    # ------------------------------------------------------------- syntax errors
    case("syntax-missing-colon", "size N\nindex n N\n", "unexpected 'N'; expected ':'", 2, 9),
    case("syntax-bad-character", "index i: 3\ninput X[i]\nY[i] = X[i] $ 2\n", "unexpected character '$'", 3, 13),
    case(
        "syntax-end-after-operator",
        "index i: 3\ninput X[i]\nY[i] = X[i] *\n",
        "unexpected end of input; expected one of '(', '|', a name, a number",
        3,
        14,
    ),
    case("syntax-unclosed-legs", "index i: 3\ninput X[i, j\n", "missing ']': the legs opened with '[' at 2:8 are not closed", 2, 13),
    # common slips are named where they happened, not where the parser noticed them
    case("slip-missing-star", "index n: 2, c: 3\ninput X[n, c]\nparam W[c]\noutput Y[n] = X[n, c] W[c] * W[c]\n",
         "missing '*' before 'W': the factors of a term are joined by '*'", 4, 23),
    case("slip-missing-star-at-end", "index n: 2, c: 3\ninput X[n, c]\nparam W[c]\noutput Y[n] = X[n, c] W[c]\n",
         "missing '*' before 'W'", 4, 23),
    case("slip-missing-star-after-scalar", "index n: 2\ninput X[n]\noutput Y[n] = 2 X[n]\n", "missing '*' before 'X'", 3, 17),
    case("slip-missing-bracket-before-next-line", "index n: 2, c: 3\ninput X[n, c\nparam W[c]\n",
         "missing ']': the legs opened with '[' at 2:8 are not closed", 2, 13),
    case("slip-missing-bracket-in-term", "index n: 2, c: 3\ninput X[n, c]\nparam W[c]\noutput Y[n] = X[n, c * W[c]\n",
         "missing ']': the legs opened with '[' at 4:16 are not closed", 4, 22),
    case("slip-missing-comma", "index i: 3, j: 3\ninput X[i j]\n", "missing ',' before 'j': the legs are separated by ','", 2, 11),
    case("slip-equals-in-index", "index n = 2\n", "an index is declared with ':' (index n: 2)", 1, 9),
    case("slip-colon-in-size", "size N: 2\n", "a size is given its value with '=' (size N = 2)", 1, 7),
    case("slip-pattern-without-arguments", "index i: 5, o: 3, k: 3\npattern P[i, o, k] = conv\ninput X[i]\n",
         "missing '(' after 'conv': a pattern lists its arguments", 2, 26),
    case("slip-keyword-as-name", "index n: 3\ninput pattern[n]\n", "'pattern' is a keyword and cannot be used as a name", 2, 7),
    case("syntax-unclosed-legs-comment", "index i: 3\ninput X[i, # more later\n", "unexpected end of input", 2, 11),
    case("syntax-parentheses-for-legs", "index i: 3\ninput X(i)\n", "unexpected '('; expected '['", 2, 8),
    case("syntax-declaration-without-legs", "input X\n", "unexpected end of input; expected '['", 1, 8),
    case("syntax-argument-without-equals", "index i: 9, k: 3\npattern P[i, o, k] = conv(stride 2)\n", "unexpected '2'; expected '='", 2, 34),
    case(
        "syntax-second-equals",
        "index i: 3\ninput X[i]\nY[i] = X[i] = X[i]\n",
        "unexpected '='; expected one of '*' or '/', '+' or '-', a new statement, end of input",
        3,
        13,
    ),
    case("syntax-stray-bracket", "index i: 3\ninput X[i]\nY[i] = X[i]]\n", "unexpected ']'", 3, 12),
    case("syntax-number-as-size-name", "size 3\n", "unexpected '3'; expected a name", 1, 6),
    case(
        "syntax-incomplete-size-before-keyword",
        "size N =\nindex n: N\n",
        "unexpected keyword 'index' (the statement before it is incomplete)",
        2,
        1,
    ),
    case(
        "syntax-trailing-comma-before-keyword",
        "index i: 3,\ninput X[i]\n",
        "unexpected keyword 'input' (the statement before it is incomplete); expected a name",
        2,
        1,
    ),
    # -------------------------------------------------------- keywords as names
    case("keyword-as-size", "size input = 3\n", "'input' is a keyword and cannot be used as a name", 1, 6),
    case("keyword-as-index", "index output: 3\n", "'output' is a keyword and cannot be used as a name", 1, 7),
    case("keyword-as-leg", "index i: 3\ninput X[size]\n", "'size' is a keyword and cannot be used as a name", 2, 9),
    case("keyword-as-tensor", "index i: 3\ninput X[i]\nY[i] = X[i] * param[i]\n", "'param' is a keyword and cannot be used as a name", 3, 15),
    case("keyword-as-pattern", "index i: 3\npattern pattern[i, o, k] = conv()\n", "'pattern' is a keyword", 2, 9),
    # ---------------------------------------------------------------- names
    case("unknown-tensor", "index i: 3\ninput X[i]\nY[i] = Z[i]\n", "unknown tensor 'Z'", 3, 8),
    case("unknown-size-in-index", "index i: M\n", "unknown size 'M'; declare it with 'size M'", 1, 10),
    case("unknown-size-in-size", "size N = M + 1\n", "unknown size 'M'", 1, 10),
    case("unknown-size-in-coefficient", "index i: 3\ninput X[i]\nY[i] = (1/M) * X[i]\n", "unknown size 'M'", 3, 11),
    case("tensor-as-size", "index i: 3\ninput X[i]\nindex j: X\n", "'X' is a tensor, not a size", 3, 10),
    case(
        "size-not-inferable",
        "input X[i]\nY[i] = X[i]\n",
        "cannot infer the size of index 'i'; declare it with 'index i: SIZE'",
        1,
        9,
    ),
    case(
        "size-not-inferable-summed-leg",
        "index i: 3\ninput X[i, j]\nY[i] = X[i, j]\n",
        "cannot infer the size of index 'j'",
        2,
        12,
    ),
    case(
        "use-before-declaration",
        "index i: 3\ninput X[i]\nY[i, j] = X[i] * E[j]\ninput E[j]\n",
        "unknown tensor 'E'",
        3,
        18,
    ),
    case(
        "duplicate-tensor",
        "index i: 3\ninput X[i]\nparam X[i]\n",
        "'X' is defined twice",
        3,
        7,
        ("first defined here", 2, 7),
    ),
    case(
        "duplicate-definition",
        "index i: 3\ninput X[i]\nY[i] = X[i]\nY[i] = 2 * X[i]\n",
        "'Y' is defined twice",
        4,
        1,
        ("first defined here", 3, 1),
    ),
    case(
        "duplicate-pattern",
        "index i: 9, k: 3\npattern P[i, o, k] = conv()\npattern P[i, o, k] = conv(stride=2)\n",
        "'P' is defined twice",
        3,
        9,
        ("first defined here", 2, 9),
    ),
    case("duplicate-size", "size N = 2\nsize N = 3\n", "size 'N' is declared twice", 2, 6, ("first declared here", 1, 6)),
    case("duplicate-size-one-statement", "size N, M, N\n", "size 'N' is declared twice", 1, 12, ("first declared here", 1, 6)),
    case("duplicate-index", "index i: 3\nindex i: 4\n", "index 'i' is declared twice", 2, 7, ("first declared here", 1, 7)),
    case(
        "duplicate-leg-in-declaration",
        "index i: 3\ninput X[i, i]\n",
        "index 'i' appears twice in 'X[...]'",
        2,
        12,
        ("first here", 2, 9),
    ),
    case(
        "use-before-definition",
        "index i: 3\ninput X[i]\nA[i] = B[i]\nB[i] = X[i]\n",
        "tensor 'B' is used before its definition",
        3,
        8,
        ("defined here", 4, 1),
    ),
    case("self-reference", "index i: 3\ninput X[i]\nA[i] = A[i] * X[i]\n", "tensor 'A' is used in its own definition", 3, 8),
    # ------------------------------------------------------------------ legs
    case(
        "too-few-legs",
        "index i: 3, j: 4\ninput X[i, j]\nY[i] = X[i]\n",
        "'X' has 2 legs, but 1 is given here",
        3,
        8,
        ("'X' is declared here", 2, 7),
    ),
    case(
        "too-many-legs",
        "index i: 3\ninput X[i]\nY[i] = X[i, i, i]\n",
        "'X' has 1 leg, but 3 are given here",
        3,
        8,
        ("'X' is declared here", 2, 7),
    ),
    case(
        "conflicting-sizes-declared",
        "index i: 3, j: 4\ninput X[i]\ninput W[j]\nY[i] = X[i] * W[i]\n",
        "conflicting sizes for index 'i': 4 here (leg 'j' of 'W'), but 3 elsewhere",
        4,
        17,
        ("size 3 comes from here (declared as 'index i: 3')", 1, 7),
    ),
    case(
        "conflicting-sizes-two-factors",
        "index i: 3, j: 4\ninput X[i]\ninput W[j]\nY[a] = X[a] * W[a]\n",
        "conflicting sizes for index 'a': 4 here (leg 'j' of 'W'), but 3 elsewhere",
        4,
        17,
        ("size 3 comes from here (leg 'i' of 'X')", 4, 10),
    ),
    case(
        "conflicting-sizes-bound-symbol",
        "size G = 2, C = 3\nindex g: G, c: C, a: 4\ninput X[(g c)]\nY[a, b] = X[(a b)]\n",
        "conflicting sizes for index 'a': G (= 2) here (leg 'g' of 'X'), but 4 elsewhere",
        4,
        14,
        ("size 4 comes from here", 2, 19),
    ),
    case(
        "group-total-size",
        "size G = 2, C = 3\nindex g: G, c: C, a: 4, b: 2\ninput X[(g c)]\nY[a, b] = X[(a b c)]\n",
        "these legs have total size 8*C (= 24), but this axis of 'X' has size C*G (= 6)",
        4,
        13,
    ),
    case(
        "group-does-not-divide",
        "index a: 4, m: 6\ninput X[m]\nY[a, b] = X[(a b)]\n",
        "this axis of 'X' has size 6, which 4 does not divide",
        3,
        13,
    ),
    case(
        "left-index-not-carried",
        "index i: 3, j: 4\ninput X[i]\nY[i, j] = X[i]\n",
        "index 'j' on the left side is carried by no factor on the right",
        3,
        6,
    ),
    case(
        "divide-by-tensor",
        "index i: 3\ninput X[i]\ninput W[i]\nY[i] = X[i] / W[i]\n",
        "cannot divide by a tensor; only by a number or a size",
        4,
        15,
    ),
    # ------------------------------------------ broadcasting, index sizes, concatenated axes
    case("index-size-of-unknown-index", "index i: 3\ninput X[i]\nY[i] = |q| * X[i]\n", "|q| is the size of an index, but no factor", 3, 8),
    case("index-size-in-its-own-size", "index i: |i|\ninput X[i]\n", "the size |i| depends on itself", 1, 10),
    case(
        "concatenated-axis-in-declaration",
        "index a: 2\ninput X[(a | 1)]\n",
        "a concatenated axis (a | b) is written only on the left side of an equation, not in 'X[...]'",
        2,
        9,
    ),
    case(
        "concatenated-axis-in-factor",
        "index a: 2\ninput X[a]\nY[a] = X[(a | 1)]\n",
        "a concatenated axis (a | b) is written only on the left side of an equation, not in a factor",
        3,
        10,
    ),
    case("concatenated-block-not-one", "index a: 2\ninput X[a]\nY[(a | 2)] = X[a]\n", "a block is a group of indices or 1", 3, 8),
    case("concatenated-block-one-twice", "index a: 2\ninput X[a]\nY[(a | 1 | 1)] = X[a] + 1\n", "has the block 1 twice", 3, 3),
    case(
        "concatenated-part-of-a-block",
        "index a: 2, b: 3\ninput X[a]\nY[(a b | 1)] = X[a] + 1\n",
        "term 1 carries only part of the block (a b) of (a b | 1) (missing b)",
        3,
        16,
    ),
    case(
        "concatenated-two-blocks",
        "index a: 2, b: 3\ninput X[a]\ninput Z[b]\nY[(a | b)] = X[a] * Z[b]\n",
        "term 1 carries the legs of 2 blocks of (a | b); a term fills one block",
        4,
        14,
    ),
    case(
        "concatenated-no-block",
        "index a: 2, b: 3\ninput X[a]\ninput Z[b]\nY[(a | b)] = X[a] + 2\n",
        "term 2 carries the legs of no block of (a | b); add a block 1",
        4,
        21,
    ),
    case(
        "concatenated-free-size",
        "size N\nindex a: N\ninput X[a]\nY[(a | 1)] = X[a] + 1\n",
        "a block of a concatenated axis needs a concrete size, but (a) has size N",
        4,
        3,
    ),
    # ----------------------------------------------------------------- sizes
    case("size-division-by-zero", "size N = 3 / 0\n", "division by zero", 1, 10),
    case("size-decimal", "index i: 1.5\n", "a size must be an integer, not 1.5", 1, 10),
    case("size-negative", "size N = 1 - 2\n", "size 'N' must not be negative, not -1", 1, 10),
    case("index-of-zero-size", "size K = 0\nindex k: K\n", "index 'k' must have a size of at least 1, not K (= 0)", 2, 10),
    case(
        "leg-of-bound-zero-size",
        "size N, K\nindex n: N, k: K\ninput X[n, k]\nY[n] = X[n, k]\n",
        "index 'k' must have a size of at least 1, not K (= 0)",
        2,
        16,
        args=("check", "--size", "K=0"),
    ),
    case("division-by-zero-size", "size P = 0, N = 4 / P\n", "division by zero (P = 0)", 1, 17),
    case("coefficient-division-by-zero-size", "size P = 0\nindex i: 2\ninput X[i]\nY[i] = X[i] / P\n", "division by zero (P = 0)", 4, 15),
    case("index-size-zero", "index i: 2 - 2\n", "index 'i' must have a size of at least 1, not 0", 1, 10),
    # ------------------------------------------------- bounds (tnc/limits.py)
    case("size-product-evaluated-once", "index i: 7 * 100000000 * 100000000 * 1000\n", "this value is too large", 1, 10),
    case("exponent-tower", "index i: 9**9**9\n", "an exponent must be an integer from -64 to 64, not 387420489", 1, 13),
    case("exponent-tower-of-twos", "index i: 2**2**2**2**2\n", "not 65536", 1, 13),
    case("power-too-large", "index i: 2**63\n", "this value is too large: sizes and coefficients are at most 2**62", 1, 10),
    case("power-of-a-free-size", "size N\nindex i: 2**N\n", "an exponent must be an integer", 2, 13),
    case("coefficient-too-large", "index i: 2\ninput A[i]\nB[i] = (10**60) * A[i]\n", "this value is too large", 3, 9),
    case("coefficient-product-too-large", "index i: 2\ninput A[i]\nB[i] = (2**62) * A[i] * 4\n", "this value is too large", 3, 25),
    case("literal-too-long", "index i: " + "9" * 5000 + "\n", "a number has at most 30 digits, this one 5000", 1, 10),
    case("literal-too-large", "size N = 99999999999999999999\n", "this value is too large", 1, 10),
    case("nesting-unary-minus", "index i: " + "-" * 1000 + "2\n", "nested more than 100 levels deep", 1, 110),
    case("nesting-parentheses", "size N = " + "(1 + " * 150 + "1" + ")" * 150 + "\n", "nested more than 100 levels deep", 1, 511),
    case(
        "nesting-grad",
        "index i: 2\nparam W[i]\ninput A[i]\nY[i] = A[i] * W[i]\nJ[i] = " + "grad(" * 2000 + "Y" + ", W)" * 2000 + "\n",
        "nested more than 100 levels deep",
        5,
        508,
    ),
    case(
        "chain-too-long",
        "index i: 2\ninput A0[i]\n" + "".join(f"A{k + 1}[i] = A{k}[i]\n" for k in range(10_001)),
        "'A10001' depends on a chain of more than 10,000 definitions",
        10_003,
        1,
    ),
    case("window-too-large", "index o: 2, k: 2, i: 9\ninput X[i]\nY[o, k] = X[9999999999999999999*o + k]\n", "too large", 3, 13),
    # ------------------------------------------------------ silent wrong answers
    case("delta-declared", "index i: 2, j: 2\ninput delta[i, j]\n", "'delta' is the built-in identity and cannot be declared", 2, 7),
    case("delta-defined", "index i: 2\ninput A[i]\ndelta[i] = A[i]\n", "'delta' is the built-in identity", 3, 1),
    case("same-as-size", "size same = 2\n", "'same' is reserved for padding=same", 1, 6),
    case("window-decimal", "index o: 2, k: 2\ninput X[i]\nY[o, k] = X[2.5*o + k]\n", "a window leg takes integers, not 2.5", 3, 13),
    case("window-decimal-padding", "index o: 2, k: 2\ninput X[i]\nY[o, k] = X[2*o + k - 0.5]\n", "not 0.5", 3, 23),
    case("divide-coefficient-by-zero", "index i: 2\ninput A[i]\nB[i] = A[i] / 0\n", "division by zero", 3, 15),
    case("divide-by-bound-zero", "size G = 2\nindex i: 2\ninput A[i]\nB[i] = A[i] / (G - 2)\n", "division by zero", 4, 16),
    case("divide-by-zero-in-coefficient", "index i: 2\ninput A[i]\nB[i] = (1 / (2 - 2)) * A[i]\n", "division by zero", 3, 9),
    case("zero-to-negative-power", "index i: 2\ninput A[i]\nB[i] = (0**-1) * A[i]\n", "division by zero", 3, 9),
    case("divide-size-by-bound-zero", "size G = 1\nindex i: 4 / (G - 1)\n", "division by zero", 2, 10),
    # ------------------------------------------- line breaks the parser does not count
    case("form-feed-in-comment", "# a\x0cb\nindex i: 2\ninput X[i]\nY[i] = Z[i]\n", "unknown tensor 'Z'", 4, 8),
    case("vertical-tab-in-comment", "# a\x0bb\nindex i: 2\nY[i] = Z[i]\n", "unknown tensor 'Z'", 3, 8),
    case("line-separator-in-comment", "# a\u2028b\nindex i: 2\nY[i] = Z[i]\n", "unknown tensor 'Z'", 3, 8),
    case("next-line-in-comment", "# a\x85b\x1cc\nindex i: 2\nY[i] = Z[i]\n", "unknown tensor 'Z'", 3, 8),
    # -------------------------------------------------------------- patterns
    case("stride-zero", "index i: 9, k: 3\npattern P[i, o, k] = conv(stride=0)\n", "stride must be at least 1, got 0", 2, 27),
    case("dilation-zero", "index i: 9, k: 3\npattern P[i, o, k] = conv(dilation=0)\n", "dilation must be at least 1, got 0", 2, 27),
    case("dilation-negative", "index i: 9, k: 3\npattern P[i, o, k] = conv(dilation=-2)\n", "dilation must be at least 1, got -2", 2, 27),
    case(
        "unknown-argument",
        "index i: 9, k: 3\npattern P[i, o, k] = conv(strde=2)\n",
        "unknown argument 'strde' to conv; expected one of stride, padding, dilation, output_padding, padding_mode",
        2,
        27,
    ),
    case("argument-twice", "index i: 9, k: 3\npattern P[i, o, k] = conv(stride=2, stride=3)\n", "argument 'stride' is given twice", 2, 37),
    case("stride-pair", "index i: 9, k: 3\npattern P[i, o, k] = conv(stride=(1, 2))\n", "'stride' takes one integer, not a pair", 2, 27),
    case(
        "same-with-stride",
        "index i: 9, k: 3\npattern P[i, o, k] = conv(stride=2, padding=same)\n",
        "padding=same needs stride 1, but stride is 2",
        2,
        37,
    ),
    case("negative-padding", "index i: 9, k: 3\npattern P[i, o, k] = conv(padding=-1)\n", "padding must not be negative, got -1", 2, 27),
    case(
        "negative-padding-pair",
        "index i: 9, k: 3\npattern P[i, o, k] = conv(padding=(1, -2))\n",
        "padding must not be negative, got (1, -2)",
        2,
        27,
    ),
    case(
        "padding-unknown-word",
        "index i: 9, k: 3\npattern P[i, o, k] = conv(padding=full)\n",
        "padding must be an integer, a size, 'same', 'valid' or a pair (left, right), not 'full'",
        2,
        35,
    ),
    case("padding-decimal", "index i: 9, k: 3\npattern P[i, o, k] = conv(padding=1.5)\n", "padding must be an integer, not 1.5", 2, 35),
    case(
        "output-size-below-one",
        "index i: 2, k: 5\npattern P[i, o, k] = conv()\n",
        "the output size of 'P' would be -2; it must be at least 1",
        2,
        14,
    ),
    case(
        "output-size-below-one-dilation",
        "index i: 6, k: 3\npattern P[i, o, k] = conv(dilation=3)\n",
        "the output size of 'P' would be 0; it must be at least 1",
        2,
        14,
    ),
    case(
        "transpose-input-size-below-one",
        "index o: 1, k: 1\npattern P[i, o, k] = conv(padding=2)\n",
        "the input size of 'P' would be -3; it must be at least 1",
        2,
        11,
    ),
    case(
        "pattern-sizes-disagree",
        "index i: 9, o: 5, k: 3\npattern P[i, o, k] = conv()\n",
        "pattern 'P' maps input size 9 with kernel 3 to output size 7, but 'o' has size 5",
        2,
        14,
    ),
    case(
        "output-padding-not-below-stride",
        "index o: 3, k: 3\npattern P[i, o, k] = conv(stride=2, output_padding=2)\n",
        "output_padding=2 must be smaller than max(stride, dilation) = 2",
        2,
        37,
    ),
    case(
        "padding-mode-unknown",
        "index i: 9, k: 3\npattern P[i, o, k] = conv(padding=1, padding_mode=mirror)\n",
        "padding_mode must be one of zeros, reflect, replicate, circular, not 'mirror'",
        2,
        51,
    ),
    case(
        "padding-mode-number",
        "index i: 9, k: 3\npattern P[i, o, k] = conv(padding=1, padding_mode=2)\n",
        "padding_mode must be one of zeros, reflect, replicate, circular, not '2'",
        2,
        51,
    ),
    case(
        "padding-mode-with-output-padding",
        "index o: 3, k: 3\npattern P[i, o, k] = conv(stride=2, output_padding=1, padding_mode=reflect)\n",
        "padding_mode=reflect needs a convolution, but output_padding makes this one a transpose convolution's: "
        "a transpose convolution pads only with zeros (as PyTorch's ConvTranspose)",
        2,
        55,
    ),
    case(
        "padding-mode-on-transpose",
        "index o: 3, k: 3\npattern P[i, o, k] = conv(stride=2, padding=1, padding_mode=circular)\n"
        "input Y[o]\nparam W[k]\noutput X[i] = Y[o] * P[i, o, k] * W[k]\n",
        "padding_mode=circular needs a convolution, but the input size 'i' is inferred from the output size 'o': "
        "a transpose convolution pads only with zeros (as PyTorch's ConvTranspose)",
        2,
        48,
    ),
    case(
        "reflect-padding-not-below-input",
        "index i: 3, k: 3\npattern P[i, o, k] = conv(padding=3, padding_mode=reflect)\ninput X[i]\noutput Y[o, k] = X[i] * P[i, o, k]\n",
        "reflect padding must be smaller than the input size, but pattern 'P' pads (3, 3) an input of size 3",
        2,
        38,
    ),
    case(
        "reflect-same-padding-not-below-input",
        "index i: 2, k: 7\npattern P[i, o, k] = conv(padding=same, padding_mode=reflect)\ninput X[i]\noutput Y[o, k] = X[i] * P[i, o, k]\n",
        "reflect padding must be smaller than the input size, but pattern 'P' pads (3, 3) an input of size 2",
        2,
        41,
    ),
    case(
        "circular-padding-above-input",
        "index i: 3, k: 3\npattern P[i, o, k] = conv(padding=(1, 4), padding_mode=circular)\ninput X[i]\noutput Y[o, k] = X[i] * P[i, o, k]\n",
        "circular padding must be at most the input size, but pattern 'P' pads (1, 4) an input of size 3",
        2,
        43,
    ),
    case(
        "output-padding-not-below-dilation",
        "index o: 3, k: 3\npattern P[i, o, k] = conv(dilation=2, output_padding=2)\n",
        "output_padding=2 must be smaller than max(stride, dilation) = 2",
        2,
        39,
    ),
    case(
        "output-padding-not-below-the-larger-of-stride-and-dilation",
        "index o: 3, k: 3\npattern P[i, o, k] = conv(stride=2, dilation=3, output_padding=3)\n",
        "output_padding=3 must be smaller than max(stride, dilation) = 3",
        2,
        49,
    ),
    case(
        "output-padding-negative",
        "index o: 3, k: 3\npattern P[i, o, k] = conv(stride=2, output_padding=-1)\n",
        "output_padding must be at least 0, got -1",
        2,
        37,
    ),
    case(
        "pattern-one-leg",
        "index i: 9, k: 3\npattern P[i] = conv()\n",
        "pattern 'P' needs three plain legs [input, output, kernel] (or two, [input, kernel], for the pattern summed over its outputs), got 1",
        2,
        9,
    ),
    case(
        "pattern-four-legs",
        "index i: 9, k: 3\npattern P[i, o, k, q] = conv()\n",
        "pattern 'P' needs three plain legs [input, output, kernel] (or two, [input, kernel], for the pattern summed over its outputs), got 4",
        2,
        9,
    ),
    case(
        "pattern-grouped-leg",
        "index i: 9, k: 3\npattern P[(i o), k, q] = conv()\n",
        "the legs of pattern 'P' cannot be grouped",
        2,
        11,
    ),
    case(
        "unknown-pattern-function",
        "index i: 9, k: 3\npattern P[i, o, k] = pool(stride=2)\n",
        "unknown index pattern 'pool'; the only pattern is conv(...)",
        2,
        22,
    ),
    case(
        "free-size-as-stride",
        "size S\nindex i: 9, k: 3\npattern P[i, o, k] = conv(stride=S)\n",
        "stride needs a concrete integer, but size S is free; bind it with 'size S = ...'",
        3,
        34,
    ),
    case(
        "free-size-as-padding",
        "size S\nindex i: 9, k: 3\npattern P[i, o, k] = conv(padding=(S, 1))\n",
        "padding needs a concrete integer, but size S is free",
        3,
        36,
    ),
    # ------------------------------------------------- element-wise functions
    case("function-unknown", "index i: 3\ninput X[i]\nY[i] = foo(X[i])\n", "unknown function 'foo'; the element-wise functions are", 3, 8),
    case("function-of-product", "index i: 3\ninput X[i]\nY[i] = relu(X[i] * X[i])\n", "the argument of relu must be a single tensor with its legs", 3, 13),
    case("function-of-sum", "index i: 3\ninput X[i]\nY[i] = tanh(X[i] - X[i])\n", "not a product or a sum", 3, 13),
    case("function-of-function", "index i: 3\ninput X[i]\nY[i] = relu(sigmoid(X[i]))\n", "the argument of relu cannot be another function", 3, 13),
    case("function-of-pattern", "index i: 9, k: 3\npattern P[i, o, k] = conv()\nY[i, o, k] = exp(P[i, o, k])\n", "exp of the index pattern 'P'", 3, 18),
    case("function-of-delta", "index i: 3\nY[i, j] = exp(delta[i, j])\n", "exp of the identity delta", 2, 15),
    case("function-wrong-legs", "index i: 3, j: 2\ninput X[i]\nY[i] = relu(X[i, j])\n", "'X' has 1 leg, but 2 are given here", 3, 13, ("'X' is declared here", 2, 7)),
    case("function-without-legs", "index i: 3\ninput X[i]\nY[i] = relu(X)\n", "relu is an element-wise function of a tensor with its legs", 3, 8),
    case("function-unknown-tensor", "index i: 3\nY[i] = sqrt(Q[i])\n", "unknown tensor 'Q'", 2, 13),
    case("derivative-inside-expression", "index i: 3\ninput X[i]\nY[i] = 2 * grad(X[i])\n", "grad(...) is a derivative form", 3, 12),
    # ------------------------------------------------- code generation errors
    case(
        "torch-nothing-to-compile",
        "index i: 3\ninput X[i]\n",
        "nothing to compile: the file defines no output tensor",
        1,
        1,
        args=("compile", "--target", "torch"),
    ),
    case(
        "size-option-for-bound-size",
        "size N = 2\nindex i: N\ninput X[i]\nY[i] = X[i]\n",
        "size 'N' is bound in the file; --size can only bind a free size",
        1,
        6,
        args=("check", "--size", "N=4"),
    ),
]


@pytest.mark.parametrize("source, message, line, column, note, args", CASES)
def test_positioned_error(tmp_path, capsys, source, message, line, column, note, args):
    status, out, err, path = run_cli(tmp_path, capsys, source, *args)
    assert status == 1, err
    assert out == ""
    assert "Traceback" not in err
    first = err.split("\n", 1)[0]
    assert first.startswith(f"{path}:{line}:{column}: error: "), first
    assert message in first, first
    reported = parse_diagnostics(err, path)
    assert reported[0].kind == "error"
    for diagnostic in reported:
        check_excerpt(source, diagnostic)
    if note is not None:
        note_message, note_line, note_column = note
        notes = [r for r in reported if r.kind == "note"]
        assert notes, err
        assert (notes[0].line, notes[0].column) == (note_line, note_column), err
        assert note_message in notes[0].message, err
        # the note follows its error directly
        assert reported[1].kind == "note"


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("index i: 9, k: 3\npattern P[i, o, k] = conv(stride=0)\ninput X[i]\nY[o] = X[i] * P[i, o, k]\n", id="bad-pattern-used"),
        pytest.param("index i: 9, k: 3\npattern P[i, o] = conv()\ninput X[i]\nY[o] = X[i] * P[i, o]\n", id="pattern-legs-used"),
        pytest.param("index i: M\ninput X[i]\nY[i] = X[i]\n", id="unknown-size-index-used"),
        pytest.param("index i: 2, k: 5\npattern P[i, o, k] = conv()\ninput X[i]\nY[o] = X[i] * P[i, o, k]\n", id="output-too-small-used"),
        pytest.param("size G = 2, C = 3\nindex g: G, c: C\ninput X[(g c), a]\nY[a, b] = X[(a b)]\n", id="wrong-legs-grouped"),
        pytest.param("Y[i] = Z[i]\n", id="unknown-tensor-legs"),
        pytest.param(
            "index i: 3, j: 4\ninput X[i, j]\nparam W[j]\nY[i] = X[i, j] * W[j]\nJ[i, j'] = grad(Y, Q)\nK[i, j'] = J[i, j'] * X[i, j']\n",
            id="derivative-of-unknown-tensor",
        ),
        pytest.param(
            "index i: 3, j: 4\ninput X[i, j]\nparam W[j]\nY[i] = X[i, j] * W[j]\nJ[i] = grad(Y, W)\nK[i] = 2 * J[i]\n",
            id="derivative-with-too-few-legs",
        ),
    ],
)
def test_one_mistake_one_error(tmp_path, capsys, source):
    """A mistake is reported once; its consequences (unknown sizes, unknown names) are not."""
    status, _, err, path = run_cli(tmp_path, capsys, source)
    assert status == 1
    assert len([r for r in parse_diagnostics(err, path) if r.kind == "error"]) == 1, err


def test_several_errors_all_reported_in_order(tmp_path, capsys):
    source = (
        "size N = 2\n"
        "size N = 3\n"  # 2:6 duplicate size
        "index i: M\n"  # 3:10 unknown size
        "input X[i]\n"
        "pattern P[i, o, k] = conv(stride=0)\n"  # 5:27 bad stride
        "Y[i] = X[i] * Q[i]\n"  # 6:15 unknown tensor
        "Z[i] = X[i] / X[i]\n"  # 7:15 divide by a tensor
    )
    status, _, err, path = run_cli(tmp_path, capsys, source)
    assert status == 1
    assert "Traceback" not in err
    reported = parse_diagnostics(err, path)
    errors = [(r.line, r.column) for r in reported if r.kind == "error"]
    assert errors == [(2, 6), (3, 10), (5, 27), (6, 15), (7, 15)], err
    messages = [r.message for r in reported if r.kind == "error"]
    assert "declared twice" in messages[0]
    assert "unknown size 'M'" in messages[1]
    assert "stride must be at least 1" in messages[2]
    assert "unknown tensor 'Q'" in messages[3]
    assert "cannot divide by a tensor" in messages[4]
    for diagnostic in reported:
        check_excerpt(source, diagnostic)


def test_error_in_compile_einsum(tmp_path, capsys):
    status, out, err, path = run_cli(tmp_path, capsys, "index i: 3\ninput X[i]\nY[i] = Z[i]\n", "compile", "--target", "einsum")
    assert (status, out) == (1, "")
    assert err.startswith(f"{path}:3:8: error: unknown tensor 'Z'")


def test_tabs_keep_the_caret_under_the_column(tmp_path, capsys):
    source = "index i: 3\ninput X[i]\nY[i] =\tZ[i]\n"
    status, _, err, path = run_cli(tmp_path, capsys, source)
    assert status == 1
    (reported,) = parse_diagnostics(err, path)
    assert (reported.line, reported.column) == (3, 8)
    assert reported.excerpt == "    Y[i] = Z[i]"
    assert reported.caret == "    " + " " * 7 + "^"


def test_error_from_standard_input(capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("index i: 3\ninput X[i]\nY[i] = Z[i]\n"))
    status = main(["check", "-"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("<stdin>:3:8: error: unknown tensor 'Z'\n    Y[i] = Z[i]\n           ^\n")


# ------------------------------------------------------------------ usage errors
def test_size_option_for_undeclared_size_is_a_usage_error(tmp_path, capsys):
    status, out, err, _ = run_cli(tmp_path, capsys, "size N\nindex i: N\ninput X[i]\nY[i] = X[i]\n", "compile", "--target", "torch", "--size", "M=4")
    assert status == 2
    assert out == ""
    assert "declares no size 'M'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("binding", ["N", "N=", "N=-3", "N=x", "=4", "N=1.5", "N=\u0663"])
def test_malformed_size_option_is_a_usage_error(tmp_path, capsys, binding):
    status, _, err, _ = run_cli(tmp_path, capsys, "size N\nindex i: N\ninput X[i]\nY[i] = X[i]\n", "check", "--size", binding)
    assert status == 2
    assert "NAME=INTEGER (0 to 2**62)" in err


def test_missing_target_is_a_usage_error(tmp_path, capsys):
    status, _, err, _ = run_cli(tmp_path, capsys, "index i: 3\ninput X[i]\nY[i] = X[i]\n", "compile")
    assert status == 2
    assert "--target" in err


def test_missing_file(tmp_path, capsys):
    missing = tmp_path / "no-such-file.tn"
    status = main(["check", str(missing)])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert captured.err.startswith(f"{missing}: error: cannot read the file")
    assert "No such file" in captured.err
    assert "Traceback" not in captured.err


def test_directory_instead_of_file(tmp_path, capsys):
    status = main(["compile", str(tmp_path), "--target", "einsum"])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err.startswith(f"{tmp_path}: error: cannot read the file")


def test_file_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "latin1.tn"
    path.write_bytes(b"# caf\xe9\nindex i: 3\n")
    status = main(["check", str(path)])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err.startswith(f"{path}: error: cannot read the file")
    assert "Traceback" not in captured.err


# ------------------------------------------------------- the real command line
def run_tnc(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TNC_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "tnc", *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd or ROOT, timeout=120
    )


def test_subprocess_syntax_error(tmp_path):
    path = tmp_path / "broken.tn"
    path.write_text("size N\nindex n N\n", encoding="utf-8")
    result = run_tnc("check", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"{path}:2:9: error: unexpected 'N'; expected ':'\n    index n N\n            ^\n"


def test_subprocess_conflict_with_note_from_stdin():
    source = "index i: 3, j: 4\ninput X[i]\ninput W[j]\nY[a] = X[a] * W[a]\n"
    result = run_tnc("compile", "-", "--target", "torch", stdin=source)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "<stdin>:4:17: error: conflicting sizes for index 'a': 4 here (leg 'j' of 'W'), but 3 elsewhere\n"
        "    Y[a] = X[a] * W[a]\n"
        "                    ^\n"
        "<stdin>:4:10: note: size 3 comes from here (leg 'i' of 'X')\n"
        "    Y[a] = X[a] * W[a]\n"
        "             ^\n"
    )


def test_subprocess_usage_and_missing_file(tmp_path):
    usage = run_tnc("check", "examples/conv2d.tn", "--size", "Q=3")
    assert usage.returncode == 2
    assert "declares no size 'Q'" in usage.stderr
    assert "Traceback" not in usage.stderr
    missing = run_tnc("check", str(tmp_path / "gone.tn"))
    assert missing.returncode == 1
    assert "cannot read the file" in missing.stderr
    assert "Traceback" not in missing.stderr
