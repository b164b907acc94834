"""A synthetic dataset in the exact REACT layout, with a planted speaker -> listener coupling.

Listeners nod after the other's phrase ends and emphasis, mimic its smiles and blink after its pauses, 8-12 frames
late; so a model that learns the coupling beats "random" and "mime" baselines. See `generate_dataset` and the CLI
(`tools/make_synthetic_react.py`).
"""
from .dataset import generate_dataset

__all__ = ["generate_dataset"]
