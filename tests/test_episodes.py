import h5py
import numpy as np
import pytest

from amplify_core.episodes import (
    SCHEMA_VERSION, Episode, EpisodeError, EpisodeReader, list_episodes, read_episode, tracks_path, write_episode,
)


def test_round_trip_keeps_every_field(tmp_path, episode_factory):
    ep = episode_factory(num_frames=12, views=("front", "side", "corner"))
    path = write_episode(tmp_path / "a.h5", ep)
    back = read_episode(path)
    assert back.views == ["front", "side", "corner"]
    for v in ep.views:
        np.testing.assert_array_equal(back.frames[v], ep.frames[v])
    np.testing.assert_allclose(back.state, ep.state)
    np.testing.assert_allclose(back.actions, ep.actions)
    assert (back.task, back.embodiment, back.fps) == (ep.task, "robot", 20.0)
    assert list(back.action_names) == list(ep.action_names)
    with h5py.File(path) as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION


def test_human_episode_has_no_actions(tmp_path, episode_factory):
    path = write_episode(tmp_path / "h.h5", episode_factory(actions=False))
    with EpisodeReader(path) as r:
        assert r.embodiment == "human" and not r.has_actions and r.actions() is None


def test_existing_episode_is_never_overwritten(tmp_path, episode_factory):
    path = write_episode(tmp_path / "a.h5", episode_factory(seed=1))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="a.h5"):
        write_episode(path, episode_factory(seed=2))
    assert path.read_bytes() == before


@pytest.mark.parametrize("frames, message", [
    (np.zeros((5, 32, 32, 3), np.float32), "uint8"),
    (np.zeros((5, 32, 32), np.uint8), "shape"),
    (np.zeros((5, 32, 32, 4), np.uint8), "3 colour channels"),
    (np.zeros((0, 32, 32, 3), np.uint8), "no frames"),
])
def test_bad_frames_are_refused_with_the_file_and_view_named(tmp_path, frames, message):
    ep = Episode(frames={"front": frames}, task="t", embodiment="robot", fps=20)
    with pytest.raises(EpisodeError, match=message) as info:
        write_episode(tmp_path / "bad.h5", ep)
    assert "bad.h5" in str(info.value) and "front" in str(info.value)
    assert not (tmp_path / "bad.h5").exists()


def test_bad_metadata_is_refused(tmp_path, episode_factory):
    ep = episode_factory()
    ep.embodiment = "robot-arm"
    with pytest.raises(EpisodeError, match="embodiment"):
        write_episode(tmp_path / "x.h5", ep)
    ep = episode_factory()
    ep.actions = ep.actions[:-1]
    with pytest.raises(EpisodeError, match="robot/actions"):
        write_episode(tmp_path / "x.h5", ep)
    ep = episode_factory()
    ep.state[3, 2] = np.nan
    with pytest.raises(EpisodeError, match="NaN"):
        write_episode(tmp_path / "x.h5", ep)


def test_unknown_view_names_the_available_ones(tmp_path, episode_factory):
    path = write_episode(tmp_path / "a.h5", episode_factory())
    with EpisodeReader(path) as r, pytest.raises(EpisodeError, match=r"no view 'wrist'.*\['front', 'side'\]"):
        r.frames("wrist")


def test_truncated_and_foreign_files_raise_episode_error(tmp_path, episode_factory):
    good = write_episode(tmp_path / "a.h5", episode_factory())
    truncated = tmp_path / "t.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    not_hdf5 = tmp_path / "n.h5"
    not_hdf5.write_text("hello")
    foreign = tmp_path / "f.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.zeros(3)
    for path, message in ((truncated, "t.h5"), (not_hdf5, "not a readable HDF5"), (foreign, "schema_version")):
        with pytest.raises(EpisodeError, match=message):
            read_episode(path)


def test_newer_schema_version_is_refused(tmp_path, episode_factory):
    path = write_episode(tmp_path / "a.h5", episode_factory())
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(EpisodeError, match="not supported"):
        EpisodeReader(path)


def test_listing_ignores_sidecars_and_partial_writes(tmp_path, episode_factory):
    a = write_episode(tmp_path / "a.h5", episode_factory())
    tracks_path(a).write_text("x")
    (tmp_path / "b.h5.partial").write_text("x")
    assert list_episodes(tmp_path) == [a]
    assert tracks_path(a).name == "a.tracks.h5"


def test_two_writers_of_one_file_never_mix_and_the_first_complete_one_wins(tmp_path, episode_factory):
    from amplify_core.atomic_files import atomic_output
    from amplify_core.tracks_store import ViewTracks, read_tracks, write_tracks

    target = tmp_path / "ep.tracks.h5"
    n = 4

    def tracks(value):
        return {"front": ViewTracks(np.full((n, 3, 5, 2), value, np.float32), np.ones((n, 3, 5), bool),
                                    np.zeros((n, 2, 5), np.uint8), (64, 64))}

    # writer A is half-way through its file when writer B writes the same name from start to end
    with pytest.raises(FileExistsError, match="another run wrote it meanwhile"):
        with atomic_output(target, overwrite=False) as a_tmp:
            with h5py.File(a_tmp, "w") as f:
                f.attrs["half"] = "written by A"
            write_tracks(target, tracks(0.5), {"tracker": "B"})  # B completes first (old code: same .partial name)
    assert read_tracks(target)["front"].tracks[0, 0, 0, 0] == 0.5  # B's complete file, not A's half
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]  # A's temporary file removed
    # overwrite=True: the last complete writer wins, whole
    write_tracks(target, tracks(-0.25), {"tracker": "C"}, overwrite=True)
    assert read_tracks(target)["front"].tracks[0, 0, 0, 0] == -0.25
    # a writer that fails part-way leaves the target as it was and no temporary file
    with pytest.raises(RuntimeError):
        with atomic_output(target, overwrite=True) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert read_tracks(target)["front"].tracks[0, 0, 0, 0] == -0.25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.tracks.h5"]


def test_concurrent_episode_writers_one_succeeds_the_others_are_refused(tmp_path, episode_factory):
    import multiprocessing as mp

    episode = episode_factory(num_frames=30)
    ctx = mp.get_context("fork")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_write_or_refuse, [(str(tmp_path / "same.h5"), episode)] * 8)
    assert results.count("written") == 1 and results.count("refused") == 7, results
    np.testing.assert_array_equal(read_episode(tmp_path / "same.h5").frames["front"], episode.frames["front"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.h5"]


def _write_or_refuse(path, episode):
    try:
        write_episode(path, episode)
        return "written"
    except FileExistsError:
        return "refused"


def test_episode_stream_appears_complete_or_not_at_all(tmp_path):
    from amplify_core.episodes import EpisodeStream

    path = tmp_path / "streamed.h5"
    state = np.arange(12, dtype=np.float32).reshape(4, 3)
    with EpisodeStream(path, ["front", "side"], 8, 6, "open the drawer", "robot", 20.0,
                       extra_attrs={"import_source": "clip.mp4"}) as stream:
        for k in range(4):
            stream.append({"front": np.full((8, 6, 3), k, np.uint8), "side": np.full((8, 6, 3), 10 + k, np.uint8)})
            assert not path.exists()  # nothing at the target until finish
        stream.finish(state=state, state_names=["a", "b", "c"])
    ep = read_episode(path)
    assert ep.num_frames == 4 and ep.frames["front"][:, 0, 0, 0].tolist() == [0, 1, 2, 3]
    assert ep.frames["side"][3, 0, 0, 0] == 13 and np.array_equal(ep.state, state) and ep.actions is None
    with h5py.File(path) as f:
        assert f.attrs["import_source"] == "clip.mp4"
    # an error inside the block, a wrong frame, a wrong row count, or leaving without finish: nothing written
    for name, body in (("raised", lambda s: 1 / 0),
                       ("shape", lambda s: s.append({"front": np.zeros((8, 8, 3), np.uint8)})),
                       ("rows", lambda s: (s.append({"front": np.zeros((8, 6, 3), np.uint8)}),
                                           s.finish(actions=np.zeros((2, 7))))),
                       ("unfinished", lambda s: s.append({"front": np.zeros((8, 6, 3), np.uint8)}))):
        target = tmp_path / f"{name}.h5"
        with pytest.raises((ZeroDivisionError, EpisodeError)):
            with EpisodeStream(target, ["front"], 8, 6, "t", "human", 20.0) as stream:
                body(stream)
        assert not target.exists(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.h5"]  # no temporary file left
    with pytest.raises(FileExistsError):
        EpisodeStream(path, ["front"], 8, 6, "t", "human", 20.0)
