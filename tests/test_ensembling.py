import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from amplify_core.ensembling import TemporalEnsembler


def test_hand_computed_example():
    # chunks of 3 steps, 1-D actions; chunk k predicted at step k holds values 10k + (0, 1, 2)
    ens = TemporalEnsembler(chunk_size=3, m=0.5)
    outs = [ens.step(np.array([[10 * k], [10 * k + 1], [10 * k + 2]], float)) for k in range(4)]
    w = np.exp(-0.5 * np.arange(3))
    assert outs[0][0] == pytest.approx(0.0)
    # step 1: chunk0[1] = 1 (oldest, weight w0), chunk1[0] = 10 (w1)
    assert outs[1][0] == pytest.approx((w[0] * 1 + w[1] * 10) / w[:2].sum())
    # step 2: chunk0[2] = 2, chunk1[1] = 11, chunk2[0] = 20
    assert outs[2][0] == pytest.approx((w[0] * 2 + w[1] * 11 + w[2] * 20) / w.sum())
    # step 3: chunk0 has ended; chunk1[2] = 12, chunk2[1] = 21, chunk3[0] = 30
    assert outs[3][0] == pytest.approx((w[0] * 12 + w[1] * 21 + w[2] * 30) / w.sum())


def test_m_zero_is_the_plain_mean_and_gaps_are_covered_by_old_chunks():
    ens = TemporalEnsembler(chunk_size=4, m=0.0)
    ens.add(np.arange(4.0)[:, None], 0)
    ens.add(np.arange(4.0)[:, None] + 100, 2)
    assert ens.action(2)[0] == pytest.approx((2 + 100) / 2)
    assert ens.action(5)[0] == pytest.approx(103)  # only the second chunk still covers step 5
    assert ens.action(6) is None


def test_rotations_are_averaged_on_the_sphere():
    ens = TemporalEnsembler(chunk_size=2, m=0.0, rotation_dims=0)
    # two rotations about z by +179 and -179 degrees: the component-wise mean would be ~identity
    a = Rotation.from_euler("z", 179, degrees=True).as_rotvec()
    b = Rotation.from_euler("z", -179, degrees=True).as_rotvec()
    ens.add(np.stack([a, a]), 0)
    ens.add(np.stack([b, b]), 1)
    angle = Rotation.from_rotvec(ens.action(1)).magnitude()
    assert np.degrees(angle) == pytest.approx(180, abs=1e-6)


def test_bad_chunks_are_refused():
    ens = TemporalEnsembler(chunk_size=3)
    with pytest.raises(ValueError, match="shape"):
        ens.add(np.zeros((2, 7)), 0)
    with pytest.raises(ValueError, match="NaN"):
        ens.add(np.full((3, 7), np.nan), 0)
    ens.add(np.zeros((3, 7)), 5)
    with pytest.raises(ValueError, match="time order"):
        ens.add(np.zeros((3, 7)), 4)
    with pytest.raises(ValueError, match="m must"):
        TemporalEnsembler(3, m=-1)
