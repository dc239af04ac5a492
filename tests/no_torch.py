"""Run a module as ``python -m`` would, in a process where ``import torch`` fails as if torch were not installed:
``python tests/no_torch.py amplify_ros.forward_dynamics_node --ros-args ...`` (the ONNX deployment path needs
only onnxruntime)."""

import importlib.abc
import runpy
import sys


class HideTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by tests/no_torch.py)", name=name)
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, HideTorch())
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
