"""Scripted experts for LIBERO-Object: pick the named object, place it in the basket.

They read the simulator's state (a learned policy never sees it) and drive the end effector with LIBERO's
OSC_POSE delta actions: a proportional step toward the phase's target, clipped to the controller's input range
(1 = 5 cm per step). Phases: above the grasp point, down to it, close, lift, over the basket, down, open, hold.
A phase ends when the gripper is within ``tolerance`` of its target or after its step budget (the grasp height
of a flat object is unreachable by a few mm when the fingers touch the table).

The grasp point comes from the scene's collision geometry (:func:`plan_grasp`), not from the object's origin:
a centre grasp fails where the palm reaches an object's top before the fingers reach its centre (the tall
salad-dressing bottle: the palm lands on the cap, slides off and the fingers close on air) or where the palm,
21 cm long along the fingers, hits a taller neighbour (the flat cream cheese beside the tomato-sauce can).
"""

from __future__ import annotations

import numpy as np

from .suites import LiberoTask

OPEN, CLOSE = -1.0, 1.0
ACTION_SCALE = 0.05  # metres per unit action of LIBERO's OSC_POSE controller (its output_max)
CLEARANCE = 0.005  # metres kept between the palm and the object's top, and wanted between gripper and neighbours
SLIDE_STEP = 0.0025  # metres between the candidate grasp points along the object


class ExpertError(ValueError):
    """The task is not one the experts know (only LIBERO-Object's pick-and-place tasks)."""


def object_and_container(env) -> tuple[str, str]:
    """The object to move and the container, from the task's BDDL goal ``(In <object> <container>_contain_region)``."""
    goal = env.env.env.parsed_problem["goal_state"]
    if len(goal) != 1 or goal[0][0].lower() != "in":
        raise ExpertError(f"no scripted expert for {env.task.text!r}: its goal is {goal}, the experts place one "
                          f"object in a container (LIBERO-Object)")
    _, obj, region = goal[0]
    return obj, region.removesuffix("_contain_region")


def body_geoms(model, root: int) -> list[int]:
    """The colliding geoms of body ``root`` and of the bodies below it (an object's parts)."""
    def under_root(body: int) -> bool:
        while body not in (root, 0):
            body = model.body_parentid[body]
        return body == root

    return [g for g in range(model.ngeom) if (model.geom_contype[g] or model.geom_conaffinity[g])
            and under_root(model.geom_bodyid[g])]


def world_boxes(sim, geoms: list[int]) -> np.ndarray:
    """(n, 2, 3) world axis-aligned [low, high] corners of the geoms, from MuJoCo's per-geom bounding boxes."""
    out = np.empty((len(geoms), 2, 3))
    for i, g in enumerate(geoms):
        rot = sim.data.geom_xmat[g].reshape(3, 3)
        centre = sim.data.geom_xpos[g] + rot @ sim.model.geom_aabb[g][:3]
        half = np.abs(rot) @ sim.model.geom_aabb[g][3:]
        out[i] = centre - half, centre + half
    return out


def clearance(gripper: np.ndarray, others: np.ndarray) -> float:
    """Smallest horizontal gap (negative: overlap) between any gripper box and any neighbour box that reaches
    above that gripper box's bottom. Neighbours stand on the table, so a vertical descent meets exactly these."""
    if len(others) == 0:
        return np.inf
    g, o = gripper[:, None], others[None]
    gap = np.maximum(o[..., 0, :2] - g[..., 1, :2], g[..., 0, :2] - o[..., 1, :2]).max(axis=-1)
    reaches = o[..., 1, 2] > g[..., 0, 2]
    return float(gap[reaches].min()) if reaches.any() else np.inf


def plan_grasp(env, obj: str) -> np.ndarray:
    """The grip-site position of a top-down grasp of ``obj`` (the gripper keeps its start orientation).

    Height: the object's middle, or higher where the palm would touch the object's top there: then the top
    minus the grip site's distance to the palm and ``CLEARANCE``. Along the horizontal axis the fingers do not
    close on, the grasp may slide from the middle toward an end (the pads staying on the object) to keep the
    gripper away from neighbours; the smallest slide with ``CLEARANCE`` wins, else the one with the most room.
    The boxes are conservative (a bounding box is larger than a rounded mesh), so "no room" is not a collision."""
    inner = env.env.env
    sim, gripper = inner.sim, inner.robots[0].gripper
    target = world_boxes(sim, body_geoms(sim.model, inner.obj_body_id[obj]))
    low, high = target[:, 0].min(axis=0), target[:, 1].max(axis=0)
    others = [world_boxes(sim, body_geoms(sim.model, b)) for name, b in inner.obj_body_id.items() if name != obj]
    others = np.concatenate(others) if others else np.empty((0, 2, 3))
    eef = env.raw_obs["robot0_eef_pos"]
    hand = world_boxes(sim, [sim.model.geom_name2id(n) for n in gripper.contact_geoms]) - eef
    pads = [world_boxes(sim, [sim.model.geom_name2id(gripper.important_geoms[k][0])])[0] - eef
            for k in ("left_fingerpad", "right_fingerpad")]
    closing = int(np.argmax(np.abs(pads[0].mean(axis=0) - pads[1].mean(axis=0))[:2]))
    slide = 1 - closing  # the horizontal axis along which the fingers do not move
    palm = hand[hand[:, 0, 2] > 0][:, 0, 2].min()  # lowest bottom of the parts above the grip site: not fingers
    point = np.r_[(low[:2] + high[:2]) / 2, max((low[2] + high[2]) / 2, high[2] - palm - CLEARANCE)]
    reach = max(0.0, (high - low)[slide] / 2 - (pads[0][1] - pads[0][0])[slide] / 2 - CLEARANCE)
    steps = np.arange(SLIDE_STEP, reach + 1e-9, SLIDE_STEP)
    best, best_room = point, -np.inf
    for offset in np.r_[0.0, np.ravel(np.c_[-steps, steps])]:  # nearest the middle first
        candidate = point.copy()
        candidate[slide] += offset
        room = clearance(hand + candidate, others)
        if room >= CLEARANCE:
            return candidate
        if room > best_room:
            best, best_room = candidate, room
    return best


class LiberoObjectExpert:
    # (name, gripper, step budget); targets are computed when the phase starts
    PHASES = (("above", OPEN, 80), ("down", OPEN, 60), ("close", CLOSE, 15), ("lift", CLOSE, 60),
              ("carry", CLOSE, 100), ("lower", CLOSE, 60), ("release", OPEN, 20), ("hold", OPEN, 10**9))

    def __init__(self, env, tolerance: float = 0.005):
        self.obj, self.container = object_and_container(env)
        self.tolerance = tolerance
        self.phase = 0
        self.phase_steps = 0
        self.target = None
        self.grasp = None

    @property
    def done(self) -> bool:
        return self.PHASES[self.phase][0] == "hold"

    def _target(self, name: str, env) -> np.ndarray | None:
        raw = env.raw_obs
        eef, obj, box = raw["robot0_eef_pos"], raw[f"{self.obj}_pos"], raw[f"{self.container}_pos"]
        if name == "above":  # planned once per episode, before the gripper moves anything
            self.grasp = plan_grasp(env, self.obj)
        # the held object, not the hand, goes over the basket's middle (an off-middle grasp would drop it near the rim)
        over_box = box[:2] + eef[:2] - obj[:2]
        return {"above": self.grasp + [0, 0, 0.12], "down": self.grasp, "lift": eef + [0, 0, 0.25],
                "carry": np.r_[over_box, eef[2]], "lower": np.r_[over_box, box[2] + 0.15]}.get(name)

    def act(self, env) -> np.ndarray:
        raw = env.raw_obs
        name, grip, budget = self.PHASES[self.phase]
        if self.phase_steps == 0:
            self.target = self._target(name, env)
        move = np.zeros(3)
        if self.target is not None:
            error = self.target - raw["robot0_eef_pos"]
            move = np.clip(error / ACTION_SCALE, -1.0, 1.0)
            reached = np.linalg.norm(error) < self.tolerance
        else:
            reached = False  # gripper-only phases run their whole budget
        self.phase_steps += 1
        if reached or self.phase_steps >= budget:
            self.phase, self.phase_steps = min(self.phase + 1, len(self.PHASES) - 1), 0
        return np.r_[move, 0.0, 0.0, 0.0, grip]


def run_expert(env, seed: int, max_steps: int | None = None, tail_steps: int = 5):
    """One expert episode from initial state ``seed``; returns ``(success, demo)`` with a
    :class:`~.demo_files.Demo` of every step (images as rendered when ``env`` renders). The episode stops
    ``tail_steps`` after LIBERO's success check first holds, or at ``max_steps`` (default ``env.max_steps``)."""
    from .demo_files import Demo
    from .env import VIEWS

    expert = LiberoObjectExpert(env)
    env.reset(seed)
    demo = Demo()
    cameras = {f"{v}_rgb": VIEWS[v] for v in env.views} if env.render else {}
    success_at = None
    for _ in range(max_steps or env.max_steps):
        action = expert.act(env)
        demo.add(env.raw_obs, env.sim_state(), action, cameras)
        _, _, success, _, _ = env.step(action)
        if success and success_at is None:
            success_at = env.steps
        if success_at is not None and env.steps >= success_at + tail_steps:
            break
    return success_at is not None and bool(env.env.check_success()), demo
