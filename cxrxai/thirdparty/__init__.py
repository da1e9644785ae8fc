"""Every private piece of another library the project relies on, one module per library,
each checked against the installed version by ``tests/test_thirdparty.py`` (which names the
module to fix when upstream changes). Everything else uses public APIs."""
