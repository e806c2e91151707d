"""fjord: infrastructure as code for sovereign AI GPU sites."""

__version__ = "0.1.0"
