"""atarchive: archive manager turning raw ATA uvh5 sessions into calibrated images."""

__version__ = "0.1.0"
