"""ONNX Runtime as a harness backend: loads ONNX exports made by another backend and runs them."""
__version__ = "0.1.0"
