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


@pytest.fixture(scope="session")
def our_meteor():
    """One cxreport MeteorSession for the whole session (its JVM start-up is most of a METEOR test)."""
    if shutil.which("java") is None:
        pytest.skip("METEOR needs java")
    from cxreport.metrics.meteor import MeteorSession

    with MeteorSession() as m:
        yield m
