"""``import logging`` stays the standard library's: inside Ray workers too."""

import logging
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_logging_is_the_standard_library_in_the_test_process():
    assert Path(logging.__file__).resolve().is_relative_to(Path(sysconfig.get_paths()["stdlib"]).resolve())
    assert not (REPO / "logging" / "__init__.py").exists()


@pytest.mark.ray
def test_logging_is_the_standard_library_inside_a_ray_worker(ray_session):
    ray = ray_session

    @ray.remote(num_cpus=0)
    def where() -> tuple[str, str]:
        import logging as worker_logging

        import nemo_turnlog

        return worker_logging.__file__, nemo_turnlog.__file__

    logging_file, turnlog_file = ray.get(where.remote(), timeout=60)
    assert not Path(logging_file).resolve().is_relative_to(REPO)
    assert Path(turnlog_file).resolve().is_relative_to(REPO / "logging" / "nemo_turnlog") or "site-packages" in turnlog_file
