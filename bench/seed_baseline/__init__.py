"""The frozen seed-style baseline: what the seed's scripts did, with the seed's tools, as its own code.

It never imports ``atarchive`` (``tests/test_architecture.py``-style check in
``tests/test_seed_baseline.py``), so no change to atarchive's steps, executor or CASA helpers can move it.
``run.py`` drives the stages of ``stages.py``, each in its own Python process run one after the
other, each looping over its units serially (as the seed's copy / flag / calibrate / image scripts
did): see ``run.py``'s docstring for the recipe.
"""
