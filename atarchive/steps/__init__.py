"""Pipeline states, in order. One module per step."""

from .calibrate import Calibrate
from .compress import Compress
from .concat import Concat
from .copy import Copy
from .fix import Fix
from .image import Image
from .report import Report
from .selfcal import Selfcal
from .sources import Sources

from ..contracts import STEP_ORDER

STEPS = [Copy(), Compress(), Concat(), Fix(), Calibrate(), Selfcal(), Image(), Sources(), Report()]
assert tuple(s.name for s in STEPS) == STEP_ORDER, "steps out of order"
STEP_NAMES = list(STEP_ORDER)
BY_NAME = {s.name: s for s in STEPS}
