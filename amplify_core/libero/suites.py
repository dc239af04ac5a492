"""LIBERO's suites and tasks by name, and their fixed initial states.

Every LIBERO task ships 50 fixed initial states (``*.pruned_init``); an evaluation's episode ``k`` starts from
state ``k mod 50``, so N episodes cover the first N states in order (not a random draw among the first few).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from .installation import import_libero

SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")


class LiberoTaskError(ValueError):
    """An unknown suite or task name; the message lists the valid ones."""


@dataclass(frozen=True)
class LiberoTask:
    suite: str
    index: int  # position in the suite (LIBERO's default task order)
    name: str  # LIBERO's task name (the BDDL file's stem)
    text: str  # the language instruction
    bddl_file: str  # absolute path

    def init_states(self):
        """(50, state_dim) float array of the fixed initial states."""
        benchmark, _ = import_libero()
        return _suite(self.suite, benchmark).get_task_init_states(self.index)


def _suite(suite: str, benchmark):
    if suite not in SUITES:
        raise LiberoTaskError(f"unknown LIBERO suite {suite!r}; known: {list(SUITES)}")
    return benchmark.get_benchmark_dict()[suite]()


@functools.lru_cache(maxsize=None)
def suite_tasks(suite: str) -> tuple[LiberoTask, ...]:
    """The suite's tasks in LIBERO's order."""
    benchmark, _ = import_libero()
    from libero.libero import get_libero_path

    s = _suite(suite, benchmark)
    out = []
    for i in range(s.n_tasks):
        t = s.get_task(i)
        out.append(LiberoTask(suite, i, t.name, t.language,
                              os.path.join(get_libero_path("bddl_files"), t.problem_folder, t.bddl_file)))
    return tuple(out)


def find_task(suite: str, task: str | int) -> LiberoTask:
    """A task of ``suite`` by index, LIBERO name or language instruction."""
    tasks = suite_tasks(suite)
    for t in tasks:
        if task in (t.index, t.name, t.text) or (isinstance(task, str) and task.isdigit() and int(task) == t.index):
            return t
    raise LiberoTaskError(f"no task {task!r} in LIBERO suite {suite!r}; its tasks: {[t.text for t in tasks]}")
