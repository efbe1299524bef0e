"""hpm: masked image modeling in which the model mines its own hard patches (HPM, CVPR 2023)."""

__version__ = "0.1.0"
