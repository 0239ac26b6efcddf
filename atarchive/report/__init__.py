"""The per-session QA report: static HTML with matplotlib PNGs, readable offline."""
