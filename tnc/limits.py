"""The resource contract: the largest input tnc accepts (documented in docs/cli.md).

Each bound is checked before the work it guards, with a positioned error (a usage error for
``--size``), so no input makes tnc hang, run out of memory or fail with an internal error.
"""

MAX_INPUT_BYTES = 4 * 2**20  # the largest source file; at most this many bytes (+1) are read
MAX_DIGITS = 30  # the longest number literal
MAX_VALUE = 2**62  # the largest size, and numerator or denominator of a coefficient
MAX_EXPONENT = 64  # the largest |exponent| of `**`, checked before the power is computed
MAX_NESTING = 100  # the deepest nesting of operators and derivative forms in one expression
MAX_CHAIN = 10_000  # the longest chain of definitions, each using the one before
