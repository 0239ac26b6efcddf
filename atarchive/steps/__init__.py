"""Pipeline states, in order. One module per step."""

from .calibrate import Calibrate
from .compress import Compress
from .concat import Concat
from .copy import Copy
from .fix import Fix
from .image import Image
from .report import Report

STEPS = [Copy(), Compress(), Concat(), Fix(), Calibrate(), Image(), Report()]
STEP_NAMES = [s.name for s in STEPS]
BY_NAME = {s.name: s for s in STEPS}
