"""The reference antenna is never one whose visibilities stay at the noise (a dead antenna), pure."""

import numpy as np

from atarchive.casa.calibrate import weak_antennas


def test_an_antenna_at_the_noise_level_is_weak():
    level = np.array([10.0, 11.0, 0.5, 9.0, np.nan, 12.0])  # antenna 2 sees noise only; 4 has no data
    assert weak_antennas(level) == [2]


def test_noise_everywhere_judges_no_antenna():
    """The real ATA sample has no coherent signal: every antenna at the noise, none singled out."""
    assert weak_antennas(np.array([0.10, 0.12, 0.11, 0.10])) == []
    assert weak_antennas(np.array([np.nan, 5.0])) == []  # too few antennas to judge
