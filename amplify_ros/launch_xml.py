"""A reader of the subset of ROS 2 XML launch files this package uses, and the command lines they mean.

``launch``/``launch_ros`` are not installable here (docs: /work/shared/notes/environment.md), so tests and
the benchmark start the processes of a launch file themselves from what this module reads. On the robot,
``ros2 launch amplify_ros amplify.launch.xml ...`` reads the same files.

Supported (anything else is refused with the tag or substitution named, so a launch file never does more on
the robot than what the tests exercised):
  <launch>, <arg name default? description?>,
  <node pkg exec name? namespace? output? args?> with <param name value/> | <param from="file.yaml"/> and
  <remap from to/>, <executable cmd output? name?>, <set_env name value> (for the processes after it),
  substitutions $(var NAME) and $(find-pkg-share PKG).
A launch argument without a default is required.
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

SUBSTITUTION = re.compile(r"\$\(([a-z-]+)\s+([^)]*?)\s*\)")


class LaunchError(ValueError):
    """The launch file uses something outside the supported subset, or lacks a required argument."""


@dataclass
class LaunchProcess:
    """One process a launch file starts."""

    kind: str                    # "node" or "executable"
    executable: str              # node exec, or the first word of an executable's cmd
    package: str | None = None
    name: str | None = None
    namespace: str | None = None
    output: str = "log"
    arguments: list[str] = field(default_factory=list)
    params: list[tuple] = field(default_factory=list)   # ("file", path) | ("value", name, value), in order
    remaps: list[tuple[str, str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)   # from the <set_env> before it

    def ros_arguments(self) -> list[str]:
        """The ``--ros-args ...`` launch_ros would pass (file parameters first, then single values, in order)."""
        if self.kind != "node":
            return []
        out = ["--ros-args"]
        if self.name:
            out += ["-r", f"__node:={self.name}"]
        if self.namespace:
            out += ["-r", f"__ns:={self.namespace if self.namespace.startswith('/') else '/' + self.namespace}"]
        for entry in self.params:
            if entry[0] == "file":
                out += ["--params-file", entry[1]]
            else:
                out += ["-p", f"{entry[1]}:={entry[2] if entry[2] != '' else chr(39) * 2}"]  # '' = empty string
        for src, dst in self.remaps:
            out += ["-r", f"{src}:={dst}"]
        return out


def _substitute(text: str, args: dict[str, str], shares: dict[str, Path], where: str) -> str:
    def repl(m):
        kind, value = m.group(1), m.group(2).strip()
        if kind == "var":
            if value not in args:
                raise LaunchError(f"{where}: $(var {value}) is not a declared launch argument")
            return args[value]
        if kind == "find-pkg-share":
            if value not in shares:
                raise LaunchError(f"{where}: $(find-pkg-share {value}): package share directory unknown")
            return str(shares[value])
        raise LaunchError(f"{where}: substitution $({kind} ...) is not supported by amplify_ros.launch_xml")

    out = SUBSTITUTION.sub(repl, text)
    if "$(" in out:
        raise LaunchError(f"{where}: unsupported substitution in {text!r}")
    return out


def _attrs(el: ET.Element, allowed: set[str], required: set[str], where: str) -> dict:
    unknown = set(el.attrib) - allowed
    if unknown:
        raise LaunchError(f"{where}: <{el.tag}> attribute(s) {sorted(unknown)} not supported")
    missing = required - set(el.attrib)
    if missing:
        raise LaunchError(f"{where}: <{el.tag}> needs attribute(s) {sorted(missing)}")
    return dict(el.attrib)


def read_launch(path: str | Path, arguments: dict[str, str] | None = None,
                shares: dict[str, Path] | None = None) -> list[LaunchProcess]:
    """The processes of launch file ``path`` with ``arguments`` (name -> value, as ``name:=value``).

    ``shares`` maps package names to their share directory (default: amplify_ros -> this source tree,
    which has the same config/ and launch/ layout as the installed share/amplify_ros/).
    """
    path = Path(path)
    shares = shares if shares is not None else {"amplify_ros": Path(__file__).resolve().parents[1]}
    given = dict(arguments or {})
    root = ET.parse(path).getroot()
    if root.tag != "launch":
        raise LaunchError(f"{path}: root element is <{root.tag}>, expected <launch>")
    args: dict[str, str] = {}
    env: dict[str, str] = {}
    processes: list[LaunchProcess] = []
    for i, el in enumerate(root):
        where = f"{path.name}: element {i + 1} <{el.tag}>"
        if el.tag == "arg":
            a = _attrs(el, {"name", "default", "description"}, {"name"}, where)
            name = a["name"]
            if name in given:
                args[name] = given.pop(name)
            elif "default" in a:
                args[name] = _substitute(a["default"], args, shares, where)
            else:
                raise LaunchError(f"{path.name}: launch argument {name!r} is required ({a.get('description', '')}); "
                                  f"pass {name}:=VALUE")
        elif el.tag == "node":
            a = _attrs(el, {"pkg", "exec", "name", "namespace", "output", "args"}, {"pkg", "exec"}, where)
            sub = {k: _substitute(v, args, shares, where) for k, v in a.items()}
            proc = LaunchProcess("node", sub["exec"], sub["pkg"], sub.get("name"), sub.get("namespace"),
                                 sub.get("output", "log"), shlex.split(sub.get("args", "")), env=dict(env))
            for child in el:
                cw = f"{where} <{child.tag}>"
                if child.tag == "param":
                    c = _attrs(child, {"name", "value", "from"}, set(), cw)
                    if "from" in c:
                        proc.params.append(("file", _substitute(c["from"], args, shares, cw)))
                    elif "name" in c and "value" in c:
                        proc.params.append(("value", c["name"], _substitute(c["value"], args, shares, cw)))
                    else:
                        raise LaunchError(f"{cw}: <param> needs name and value, or from")
                elif child.tag == "remap":
                    c = _attrs(child, {"from", "to"}, {"from", "to"}, cw)
                    proc.remaps.append((_substitute(c["from"], args, shares, cw), _substitute(c["to"], args, shares, cw)))
                else:
                    raise LaunchError(f"{cw}: not supported inside <node>")
            processes.append(proc)
        elif el.tag == "executable":
            a = _attrs(el, {"cmd", "output", "name"}, {"cmd"}, where)
            words = shlex.split(_substitute(a["cmd"], args, shares, where))
            if not words:
                raise LaunchError(f"{where}: empty cmd")
            processes.append(LaunchProcess("executable", words[0], name=a.get("name"), output=a.get("output", "log"),
                                           arguments=words[1:], env=dict(env)))
        elif el.tag == "set_env":
            a = _attrs(el, {"name", "value"}, {"name", "value"}, where)
            env[a["name"]] = _substitute(a["value"], args, shares, where)
        else:
            raise LaunchError(f"{where}: <{el.tag}> is not supported by amplify_ros.launch_xml")
    if given:
        raise LaunchError(f"{path.name}: unknown launch argument(s) {sorted(given)}; declared: {sorted(args)}")
    return processes


def console_scripts(setup_py: str | Path) -> dict[str, str]:
    """``name -> module:function`` of the console_scripts entry points written in a setup.py."""
    text = Path(setup_py).read_text()
    return dict(re.findall(r"""["']\s*([\w.-]+)\s*=\s*([\w.]+:\w+)\s*["']""", text))


def command_line(proc: LaunchProcess, bin_dir: str | Path, entry_points: dict[str, str],
                 python: str) -> list[str]:
    """argv of a process: the installed console script in ``bin_dir`` if present, else ``python -m module``
    for a setup.py entry point (what colcon would install), else the command itself (from PATH)."""
    script = Path(bin_dir) / proc.executable
    if script.is_file():
        head = [str(script)]
    elif proc.executable in entry_points:
        module, func = entry_points[proc.executable].split(":")
        head = [python, "-m", module] if func == "main" else \
            [python, "-c", f"import sys; from {module} import {func}; sys.exit({func}())"]
    else:
        head = [proc.executable]
    return head + list(proc.arguments) + proc.ros_arguments()
