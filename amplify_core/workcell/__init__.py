"""Simulated UR5 workcell (MuJoCo) with three static cameras; no ROS import. See docs/workcell.md.

Modules: ``config`` (YAML settings + camera/table poses from urdf/workcell.urdf), ``description``
(URDF -> MJCF), ``scene`` (objects, seeded layout), ``tasks`` (instructions, success predicates),
``ik`` (fast UR5 IK), ``env`` (gymnasium-style env), ``experts`` (scripted experts), ``rollout``
(expert episodes), ``episode_io`` (episode files with replay state), ``render`` (RGB/depth/segmentation),
``ground_truth`` (simulator keypoint tracks). The 'human' embodiment (a floating hand) is built by
``description`` and driven by ``env``.
"""

import os

# Headless rendering by default; must be set before mujoco creates its GL context. A user's choice wins.
os.environ.setdefault("MUJOCO_GL", "egl")
