"""ftlab: a fine-tuning lab for Hugging Face models, the package behind the course's scripts.

The course's entry points stay at the repository root (dataHelper.py, train.py, eval.py); the user tools
are sub-commands of one console script, `ftlab <tool>` (ftlab/cli.py). Layers, low to high (a module
imports only its own layer or lower ones; tests/test_import_graph.py checks it):
io, hardware, commandline < metrics, models, data < speed < methods < runs < train < analysis, llm < cli < root scripts.
"""
