"""Differentiable rendering ops with a pure-PyTorch reference and an optional CUDA backend (``thg_nerf._C``)."""
