"""``python -m minigpt.generate``: the same command as ``minigpt-generate``.

The command line lives in :mod:`minigpt.generate_cli`; this module only lets it run with
``python -m``. (Generation itself is :func:`minigpt.sample.generate`.)
"""

if __name__ == "__main__":
    import runpy

    runpy.run_module("minigpt.generate_cli", run_name="__main__", alter_sys=True)
