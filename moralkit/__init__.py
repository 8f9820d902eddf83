"""moralkit: a teaching workbook on moral alignment of LLM agents with intrinsic rewards.

The package is a set of modules (``moralkit.games``, ``moralkit.rewards``, ``moralkit.llm``, ...);
importing ``moralkit`` itself loads nothing heavy.
"""

__version__ = "0.1.0"
