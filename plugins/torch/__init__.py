"""harness_torch: the PyTorch backend (CPU, CUDA, and Ascend through torch_npu).

Registered as ``torch`` in the ``harness.backends`` entry-point group; the hook
implementations are in :mod:`harness_torch.plugin`.
"""
__version__ = "0.1.0"
