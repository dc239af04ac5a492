"""Episode recorder: one ROS 2 bag (rosbag2 format, metadata.yaml v9) per demonstration, with its metadata.

ROS contract
  Subscriptions (always subscribed, so no frame is lost to discovery at the start of an episode; a message is
  written only while an episode is recording)
    /cameras/front/image_raw   sensor_msgs/Image. Topics: ``camera_topics``; QoS per camera
    /cameras/side/image_raw    ``camera_reliability`` (auto: what the publishers offer, amplify_ros/qos_matching.py;
    /cameras/corner/image_raw  or reliable | best_effort) and ``camera_depth`` (default auto, depth 10), volatile.
    /joint_states              sensor_msgs/JointState        (``joint_states_topic``)  } reliable, volatile,
    /ur5/tcp_pose              geometry_msgs/PoseStamped     (``tcp_pose_topic``)      } depth ``topic_depth``
    /ur5/command               trajectory_msgs/JointTrajectory (``command_topic``)     } (an empty topic name
    /task                      std_msgs/String               (``task_topic``)          } records nothing)
    A ``human`` episode records the camera topics only.
  Publications
    /recorder/status           std_msgs/String JSON at ``status_rate``: recording, episode, path, task,
                               embodiment, messages (written per topic), queue_depth, queued_mb, dropped
                               (per topic), episodes (started by this node), last_error, camera_qos (the
                               reliability each camera topic is subscribed with; null while it has no publisher).
  Services (std_srvs only; private names, so /recorder/... for the node name "recorder" and /<name>/... for a
  second recorder started with -r __node:=<name>)
    /recorder/start            std_srvs/Trigger: opens a new bag ``<output_dir>/<prefix>_<YYYYmmdd_HHMMSS>_<NNN>``
                               (NNN counts the episodes started by this node, from 001). Refused when already
                               recording, when the directory exists (never overwritten), or when ``task`` is empty
                               for a robot episode.
    /recorder/stop             std_srvs/SetBool (data = the demonstration succeeded): closes the bag, then writes
                               ``episode.json`` inside the bag directory.
    /recorder/discard          std_srvs/Trigger: stops the current episode and deletes its bag directory.
  Parameters: PARAMETERS below (each with a description); defaults in config/recorder.yaml. ``task``,
  ``embodiment``, ``operator_note``, ``output_dir``, ``prefix``, ``storage`` and ``max_queue_mb`` can be set at
  run time and are read at each start; every other parameter is read-only (``ros2 param set`` is refused).

Messages are written as received (the serialized CDR bytes of a ``raw`` subscription, never deserialized), with
the receive time (node clock, ns) as the bag timestamp; their header stamps are untouched. Writing happens in a
writer thread fed by a bounded queue (``max_queue_mb``), so a slow disk never stalls the subscriptions: when
the queue is full new messages are dropped and counted (status, episode.json, stop log line).

On SIGINT/SIGTERM while recording the bag is closed cleanly and episode.json says ``"interrupted": true``
(``success`` false).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from amplify_ros.camera_inputs import CAMERA_PARAMETERS, DEFAULT_TOPICS
from amplify_ros.qos_matching import MatchedSubscription
from amplify_ros.node_runner import run_node
from amplify_ros.parameters import declare, float_param, int_param, per_camera, text_param

SCHEMA = 1
EMBODIMENTS = ("robot", "human")
STORAGES = ("mcap", "sqlite3")
IMAGE, JOINT_STATE, POSE, TRAJECTORY, STRING = ("sensor_msgs/msg/Image", "sensor_msgs/msg/JointState",
                                                "geometry_msgs/msg/PoseStamped", "trajectory_msgs/msg/JointTrajectory",
                                                "std_msgs/msg/String")

# applied when changed at run time (read at each start); every other parameter is read-only (read at start-up)
RUNTIME_PARAMETERS = ("task", "embodiment", "operator_note", "output_dir", "prefix", "storage", "max_queue_mb")
PARAMETERS = {
    "output_dir": ("~/amplify_bags", text_param("folder of the episode bags (created if missing, ~ expanded); "
                                                "read at each start")),
    "prefix": ("episode", text_param("bag directory name prefix: <prefix>_<YYYYmmdd_HHMMSS>_<NNN>; read at each "
                                     "start")),
    "storage": ("mcap", text_param("rosbag2 storage plugin: mcap or sqlite3; read at each start")),
    "task": ("", text_param("task instruction of the next episode (required for a robot episode); read at start")),
    "embodiment": ("robot", text_param("robot (cameras, joint states, TCP pose, commands, task) or human (cameras "
                                       "only); read at start")),
    "operator_note": ("", text_param("free text stored with the next episode; read at start")),
    "camera_topics": (DEFAULT_TOPICS, text_param("sensor_msgs/Image topics recorded (robot and human episodes)")),
    "camera_reliability": CAMERA_PARAMETERS["camera_reliability"],
    "camera_depth": ([10], text_param("QoS keep-last depth per camera, one value for all or one per camera")),
    "qos_check_period": (1.0, float_param("seconds between looks at each camera's publishers under "
                                          "camera_reliability auto (every start looks at once as well)", 0.1, 3600.0)),
    "joint_states_topic": ("joint_states", text_param("sensor_msgs/JointState topic ('' = not recorded)")),
    "tcp_pose_topic": ("ur5/tcp_pose", text_param("geometry_msgs/PoseStamped topic of the tool pose ('' = not "
                                                   "recorded)")),
    "command_topic": ("ur5/command", text_param("trajectory_msgs/JointTrajectory command topic ('' = not recorded)")),
    "task_topic": ("task", text_param("std_msgs/String task topic ('' = not recorded)")),
    "topic_depth": (50, int_param("QoS keep-last depth (reliable, volatile) of the non-camera topics", 1, 10000)),
    "max_queue_mb": (1024.0, float_param("messages waiting for the disk beyond this many MB are dropped (and "
                                         "counted)", 1.0, 65536.0)),
    "status_rate": (1.0, float_param("Hz of /recorder/status", 0.1, 50.0)),
}


def bag_name(prefix: str, when: datetime.datetime, index: int) -> str:
    return f"{prefix}_{when.strftime('%Y%m%d_%H%M%S')}_{index:03d}"


@dataclass
class EpisodeInfo:
    name: str
    path: Path
    task: str
    embodiment: str
    operator_note: str
    storage: str
    start_time_ns: int
    topics: dict[str, str]  # topic -> message type


class EpisodeWriter:
    """One bag and the thread that writes it: ``put`` never blocks, ``finish`` drains and closes.

    The rosbags Writer lives entirely in the writer thread (sqlite3 objects may only be used by their thread).
    """

    def __init__(self, info: EpisodeInfo, max_queue_bytes: int, typestore):
        self.info = info
        self.max_queue_bytes = max_queue_bytes
        self.written = {topic: 0 for topic in info.topics}
        self.dropped = {topic: 0 for topic in info.topics}
        self.error: str | None = None  # first write error (later messages are dropped and counted)
        self._typestore = typestore
        self._queue: deque = deque()
        self._queued_bytes = 0
        self._closing = False
        self._abort = False
        self._custom_data: dict[str, str] = {}
        self._open_error: BaseException | None = None
        self._close_error: BaseException | None = None
        self._opened = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"writer {info.name}", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._open_error is not None:
            self._thread.join()
            raise self._open_error

    @property
    def topics(self):
        return self.info.topics

    def put(self, topic: str, t_ns: int, data: bytes) -> bool:
        """Queue one message; False (and counted as dropped) when the queue is full or the writer failed."""
        with self._cond:
            if self._closing or self.error is not None or self._queued_bytes + len(data) > self.max_queue_bytes:
                self.dropped[topic] += 1
                return False
            self._queue.append((topic, t_ns, data))
            self._queued_bytes += len(data)
            self._cond.notify()
        return True

    def queue_state(self) -> tuple[int, int]:
        with self._cond:
            return len(self._queue), self._queued_bytes

    def _open(self):
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[self.info.storage]
        writer = Writer(self.info.path, version=9, storage_plugin=plugin)  # refuses an existing path
        writer.open()
        try:
            connections = {topic: writer.add_connection(topic, msgtype, typestore=self._typestore)
                           for topic, msgtype in self.info.topics.items()}
        except BaseException:
            writer.abort()
            raise
        return writer, connections

    def _run(self) -> None:
        try:
            writer, connections = self._open()
        except BaseException as exc:
            self._open_error = exc
            self._opened.set()
            return
        self._opened.set()
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    break  # closing and drained
                topic, t_ns, data = self._queue.popleft()
                self._queued_bytes -= len(data)
                failed = self.error is not None
                if failed:
                    self.dropped[topic] += 1
            if failed:
                continue
            try:
                writer.write(connections[topic], t_ns, data)
                self.written[topic] += 1
            except Exception as exc:  # e.g. disk full: keep draining (counted as dropped), report it
                with self._cond:
                    self.error = f"writing {topic}: {type(exc).__name__}: {exc}"
                    self.dropped[topic] += 1
        try:
            if self._abort:
                writer.abort()
            else:
                for key, value in self._custom_data.items():
                    writer.set_custom_data(key, value)
                writer.close()  # metadata.yaml (with custom_data) is written here
        except BaseException as exc:
            self._close_error = exc

    def _stop_thread(self, abort: bool, custom_data: dict[str, str] | None = None) -> None:
        with self._cond:
            self._closing, self._abort = True, abort
            self._custom_data = dict(custom_data or {})
            if abort:  # what is still queued is not written
                for topic, _, _ in self._queue:
                    self.dropped[topic] += 1
                self._queue.clear()
                self._queued_bytes = 0
            self._cond.notify()
        self._thread.join()

    def finish(self, custom_data: dict[str, str]) -> None:
        """Write what is queued, then close the bag (metadata.yaml with ``custom_data``); raises a close error."""
        self._stop_thread(False, custom_data)
        if self._close_error is not None:
            raise self._close_error

    def abort(self) -> None:
        """Stop without writing the rest and without metadata (for discard)."""
        self._stop_thread(True)


class RecorderNode(Node):
    def __init__(self):
        super().__init__("recorder")
        p = self.p = declare(self, PARAMETERS, runtime=RUNTIME_PARAMETERS)
        for name, allowed in (("embodiment", EMBODIMENTS), ("storage", STORAGES)):
            if p[name] not in allowed:
                raise ValueError(f"parameter {name} must be one of {allowed}, got {p[name]!r}")
        from rosbags.typesys import Stores, get_typestore

        self.typestore = get_typestore(Stores.ROS2_JAZZY)  # message definitions and type hashes as in Jazzy
        self.lock = threading.Lock()
        self.episode: EpisodeWriter | None = None
        self.episodes_started = 0
        self.last_error: str | None = None
        self.last_episode: str | None = None

        # fully qualified names (a relative one is in the node's namespace): the bag holds the real topic names
        self.camera_topics = [self.resolve_topic_name(t) for t in p["camera_topics"] if t]
        self.topic_types: dict[str, str] = {t: IMAGE for t in self.camera_topics}
        for key, msgtype in (("joint_states_topic", JOINT_STATE), ("tcp_pose_topic", POSE),
                             ("command_topic", TRAJECTORY), ("task_topic", STRING)):
            if p[key]:
                topic = self.resolve_topic_name(p[key])
                if topic in self.topic_types:
                    raise ValueError(f"parameter {key}: topic {topic} is already recorded as {self.topic_types[topic]}")
                self.topic_types[topic] = msgtype
        msg_classes = self._message_classes()
        reliability = per_camera(p["camera_reliability"], len(self.camera_topics), "camera_reliability")
        depth = per_camera(p["camera_depth"], len(self.camera_topics), "camera_depth")
        state_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p["topic_depth"],
                               reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self.camera_subscriptions = []
        for topic, msgtype in self.topic_types.items():
            callback = lambda data, t=topic: self.on_message(t, data)  # noqa: E731
            if msgtype == IMAGE:
                i = self.camera_topics.index(topic)
                self.camera_subscriptions.append(
                    MatchedSubscription(self, msg_classes[msgtype], topic, callback, depth[i], reliability[i],
                                        check_period=p["qos_check_period"], raw=True))
            else:
                self.create_subscription(msg_classes[msgtype], topic, callback, state_qos, raw=True)

        self.add_on_set_parameters_callback(self.on_parameters)
        # private names: /recorder/start ... for the node name "recorder"; a second recorder (-r __node:=other)
        # gets its own /other/start ...
        self.create_service(Trigger, "~/start", self.on_start)
        self.create_service(SetBool, "~/stop", self.on_stop)
        self.create_service(Trigger, "~/discard", self.on_discard)
        self.status_pub = self.create_publisher(String, "~/status", 10)
        self.create_timer(1.0 / p["status_rate"], self.publish_status)
        services = ", ".join(self.resolve_service_name(f"~/{s}") for s in ("start", "stop", "discard"))
        self.get_logger().info(f"ready: {len(self.topic_types)} topics ({', '.join(self.topic_types)}), bags in "
                               f"{self._output_dir()} ({p['storage']}); services {services}")

    @staticmethod
    def _message_classes() -> dict:
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import Image, JointState
        from trajectory_msgs.msg import JointTrajectory

        return {IMAGE: Image, JOINT_STATE: JointState, POSE: PoseStamped, TRAJECTORY: JointTrajectory, STRING: String}

    # ---- parameters --------------------------------------------------------------------------------
    def on_parameters(self, params) -> SetParametersResult:
        for prm in params:
            allowed = {"embodiment": EMBODIMENTS, "storage": STORAGES}.get(prm.name)
            if allowed and prm.value not in allowed:
                return SetParametersResult(successful=False,
                                           reason=f"{prm.name} must be one of {allowed}, got {prm.value!r}")
        return SetParametersResult(successful=True)

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _output_dir(self) -> Path:
        return Path(os.path.expanduser(self._param("output_dir")))

    # ---- messages ----------------------------------------------------------------------------------
    def on_message(self, topic: str, data: bytes) -> None:
        episode = self.episode
        if episode is None or topic not in episode.topics:
            return
        episode.put(topic, self.get_clock().now().nanoseconds, data)

    # ---- services ----------------------------------------------------------------------------------
    def _log(self, ok: bool, message: str) -> None:
        # two call sites: rclpy refuses one call site logging at two severities
        if ok:
            self.get_logger().info(message)
        else:
            self.get_logger().warning(message)

    def on_start(self, request, response):
        response.success, response.message = self._start()
        self._log(response.success, f"start: {response.message}")
        return response

    def _start(self) -> tuple[bool, str]:
        with self.lock:
            if self.episode is not None:
                stop, discard = self.resolve_service_name("~/stop"), self.resolve_service_name("~/discard")
                return False, f"already recording episode {self.episode.info.name}: call {stop} or {discard} first"
            task = str(self._param("task")).strip()
            embodiment = self._param("embodiment")
            if embodiment == "robot" and not task:
                return False, ("parameter task is empty: a robot episode needs its instruction (ros2 param set "
                               f"{self.get_fully_qualified_name()} task '<instruction>'), or set embodiment to human")
            index = self.episodes_started + 1
            name = bag_name(self._param("prefix"), datetime.datetime.now(), index)
            path = self._output_dir() / name
            if path.exists() or path.is_symlink():
                return False, f"{path} already exists: refusing to overwrite it (try again in a second)"
            for sub in self.camera_subscriptions:
                if sub.mode == "auto":  # a camera that appeared since the last look is subscribed now, not up to
                    sub.check()         # qos_check_period into the episode
            topics = {t: m for t, m in self.topic_types.items() if embodiment == "robot" or m == IMAGE}
            info = EpisodeInfo(name=name, path=path, task=task, embodiment=embodiment,
                               operator_note=str(self._param("operator_note")), storage=self._param("storage"),
                               start_time_ns=self.get_clock().now().nanoseconds, topics=topics)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.episode = EpisodeWriter(info, int(self._param("max_queue_mb") * 2**20), self.typestore)
            except Exception as exc:
                self.last_error = f"cannot open {path}: {type(exc).__name__}: {exc}"
                return False, self.last_error
            self.episodes_started = index
            self.last_error = None
            if embodiment == "human" and not task:
                self.get_logger().warning(f"human episode {name} has no task")
            return True, (f"recording episode {name} ({embodiment}, task {task!r}) to {path} ({info.storage}), "
                          f"{len(topics)} topics")

    def on_stop(self, request, response):
        response.success, response.message = self.finish_episode(success=bool(request.data))
        self._log(response.success, f"stop: {response.message}")
        return response

    def finish_episode(self, success: bool, interrupted: bool = False) -> tuple[bool, str]:
        """Close the bag and write episode.json; also the shutdown path (``interrupted``)."""
        with self.lock:
            episode, self.episode = self.episode, None
            if episode is None:
                return False, "not recording"
            info = episode.info
            end_ns = self.get_clock().now().nanoseconds
            success = bool(success) and not interrupted
            meta = {"schema": SCHEMA, "task": info.task, "embodiment": info.embodiment,
                    "operator_note": info.operator_note, "success": success, "interrupted": interrupted,
                    "start_time_ns": info.start_time_ns, "end_time_ns": end_ns}
            custom = {"amplify.schema": str(SCHEMA), "amplify.task": info.task,
                      "amplify.embodiment": info.embodiment, "amplify.success": json.dumps(success),
                      "amplify.operator_note": info.operator_note, "amplify.interrupted": json.dumps(interrupted)}
            try:
                episode.finish(custom)
            except Exception as exc:
                self.last_error = f"closing {info.path}: {type(exc).__name__}: {exc}"
                return False, self.last_error
            meta.update(topics=dict(episode.written), dropped=dict(episode.dropped), storage=info.storage,
                        write_error=episode.error)
            try:  # written after the bag is closed: a bag with episode.json is complete
                tmp = info.path / "episode.json.tmp"
                tmp.write_text(json.dumps(meta, indent=2) + "\n")
                tmp.replace(info.path / "episode.json")
            except OSError as exc:
                self.last_error = f"bag {info.path} closed, but writing episode.json failed: {exc}"
                return False, self.last_error
            self.last_episode = info.name
            if episode.error:
                self.last_error = episode.error
            empty = [topic for topic, count in episode.written.items() if count == 0]
            if empty:  # a topic without a publisher is simply empty
                self.get_logger().warning(f"episode {info.name}: no messages on {', '.join(empty)}")
            dropped = sum(episode.dropped.values())
            counts = ", ".join(f"{t} {n}" for t, n in episode.written.items())
            state = "INTERRUPTED (success false)" if interrupted else f"success={success}"
            seconds = (end_ns - info.start_time_ns) / 1e9
            error = f"; write error: {episode.error}" if episode.error else ""
            return episode.error is None, (f"episode {info.name} closed, {state}, {seconds:.1f} s: {counts}; "
                                           f"dropped {dropped}{error}; {info.path}")

    def on_discard(self, request, response):
        with self.lock:
            episode, self.episode = self.episode, None
            if episode is None:
                response.success, response.message = False, "not recording: nothing to discard"
            else:
                written = sum(episode.written.values())
                try:
                    episode.abort()
                finally:
                    shutil.rmtree(episode.info.path, ignore_errors=True)
                gone = not episode.info.path.exists()
                response.success = gone
                response.message = (f"episode {episode.info.name} discarded ({written} messages), "
                                    f"{'deleted' if gone else 'could NOT delete'} {episode.info.path}")
                if not gone:
                    self.last_error = response.message
        self._log(response.success, f"discard: {response.message}")
        return response

    # ---- status ------------------------------------------------------------------------------------
    def publish_status(self) -> None:
        episode = self.episode
        status = {"node": self.get_name(), "recording": episode is not None, "episode": None, "path": None,
                  "messages": {}, "queue_depth": 0, "queued_mb": 0.0, "dropped": {},
                  "episodes": self.episodes_started, "last_episode": self.last_episode, "last_error": self.last_error,
                  "camera_qos": {s.topic: s.reliability for s in self.camera_subscriptions}}
        if episode is not None:
            depth, queued = episode.queue_state()
            status.update(episode=episode.info.name, path=str(episode.info.path), task=episode.info.task,
                          embodiment=episode.info.embodiment, messages=dict(episode.written), queue_depth=depth,
                          queued_mb=round(queued / 2**20, 1), dropped=dict(episode.dropped),
                          duration_s=round((self.get_clock().now().nanoseconds - episode.info.start_time_ns) / 1e9, 1))
            if episode.error:
                status["last_error"] = episode.error
        self.status_pub.publish(String(data=json.dumps(status)))


def close_on_shutdown(node: RecorderNode) -> None:
    """On SIGINT/SIGTERM (or any exit) while recording: close the bag, episode.json says interrupted."""
    if node.episode is None:
        return
    ok, message = node.finish_episode(success=False, interrupted=True)
    node.get_logger().warning(f"shutdown while recording: {message}" if ok else f"shutdown: {message}")


def main(args=None) -> None:
    run_node(RecorderNode, args, before_destroy=close_on_shutdown)


if __name__ == "__main__":
    main()
