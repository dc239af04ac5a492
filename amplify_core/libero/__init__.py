"""LIBERO (the paper's benchmark) as an optional extra; no ROS import. See docs/libero.md.

Modules: ``installation`` (find the installed package and assets, write LIBERO's config without prompts,
import it), ``suites`` (suite and task names, fixed initial states), ``env`` (one LIBERO task as an
environment with the project's observation format, stepped from LIBERO's fixed initial states),
``experts`` (scripted LIBERO-Object experts), ``demo_files`` (LIBERO's HDF5 demonstration format: write,
read, convert to the episode store). Install with ``bash scripts/setup_libero.sh``.
"""
