"""Meta-World as a workbench task family: the env adapter (``env.py``) and suite evaluation (``suite.py``).

The task names, instructions and suites register from :mod:`vla_engine.envs.metaworld_tasks` (light);
the modules here import ``metaworld`` and MuJoCo and load when an env is built.
"""
