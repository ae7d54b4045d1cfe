"""Shared fixtures. Every test runs minigpt under jaxtyping's runtime shape checker."""

from jaxtyping import install_import_hook

# Must run before anything imports minigpt: every annotated function is then checked
# (shapes and dtypes) by beartype at call time. The checker lives in minigpt_typecheck.py
# beside this file (pytest puts this folder on sys.path).
install_import_hook("minigpt", "minigpt_typecheck.checker")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def reference():
    """The reference GPT-2 (loaded once for the whole test session, ~10 s on 2 cores)."""
    from minigpt.reference import load_reference

    return load_reference()
