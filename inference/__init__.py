"""Model-side libraries imported by Triton python-backend models and by offline jobs.

Import the submodule you need (``from inference.embedding import Encoder``); the package itself imports
nothing, so using one model's library never loads another's runtime.
"""
