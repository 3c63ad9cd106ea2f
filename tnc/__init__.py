"""tnc: a symbolic tensor-network compiler for convolutions and their derivatives."""
