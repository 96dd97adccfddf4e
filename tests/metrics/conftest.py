import shutil

import pytest


@pytest.fixture(scope="session")
def direct_meteor():
    """One pycocoevalcap Meteor (one JVM, ~6-10 s to load) shared by the tests that compare with it."""
    if shutil.which("java") is None:
        pytest.skip("METEOR needs java")
    from pycocoevalcap.meteor.meteor import Meteor

    m = Meteor()
    yield m
    m.meteor_p.kill()
