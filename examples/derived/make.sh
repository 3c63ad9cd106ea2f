#!/usr/bin/env bash
# Regenerates every file in examples/derived/ from the forward networks in examples/ with
# `tnc derive` (nothing here is written by hand). Run from anywhere:
#   examples/derived/make.sh            # uses `tnc` from the repository's .venv, else from PATH
#   TNC=/path/to/tnc examples/derived/make.sh
# tests/test_derive.py checks that the files are up to date and compares each with torch.func.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # the repository root: headers name examples/*.tn
if [[ -z "${TNC:-}" ]]; then
    if [[ -x .venv/bin/tnc ]]; then TNC=.venv/bin/tnc; else TNC=tnc; fi
fi
out=examples/derived

derive() {  # derive NAME SOURCE ARGS...
    local name=$1 source=$2
    shift 2
    "$TNC" derive "examples/$source" "$@" -o "$out/$name.tn"
    echo "$out/$name.tn"
}

for conv in conv1d conv2d conv3d; do
    derive "${conv}_weight_jacobian" "$conv.tn" --wrt W            # dY/dW (jacrev)
    derive "${conv}_input_jacobian"  "$conv.tn" --wrt X            # dY/dX (jacrev)
    derive "${conv}_weight_vjp"      "$conv.tn" --wrt W --vjp V    # the weight gradient
    derive "${conv}_input_vjp"       "$conv.tn" --wrt X --vjp V    # a transpose convolution
    derive "${conv}_weight_jvp"      "$conv.tn" --wrt W --jvp U    # forward mode in W
    derive "${conv}_input_jvp"       "$conv.tn" --wrt X --jvp U    # forward mode in X
done

# The KFC factor is quadratic in X: its VJP has one term per copy of X (product rule).
derive kfc_input_vjp kfc.tn --wrt X --vjp V
