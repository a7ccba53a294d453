"""Languages as data: a deployer's file and the limit adjustments it may carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import languages
from sandbox.image.store import Image
from sandbox.plan import build_plan
from sandbox.settings import Settings
from sandbox.spec import JobSpec


def test_a_deployers_language_with_adjusted_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """SANDBOX_LANGUAGES_FILE adds languages; time_factor, extra_memory and extra_pids
    adjust a run's limits, within the host's maxima (the compile step keeps its own)."""
    extra = tmp_path / "languages.toml"
    extra.write_text(
        '[slowpy]\nsource = "main.py"\nrun = ["/usr/bin/python3", "main.py"]\n'
        'time_factor = 3\nextra_memory = "16M"\nextra_pids = 8\n'
    )
    monkeypatch.setenv("SANDBOX_LANGUAGES_FILE", str(extra))
    image = Image("host", root=Path("/img"), binds=("/usr",))
    spec = JobSpec(code="x", language="slowpy", limits={"cpu_time": 2, "wall_time": 4})
    lim = build_plan(spec, Settings(), image).limits
    assert (lim.cpu_time, lim.wall_time, lim.memory) == (6, 12, 256 * 2**20 + 16 * 2**20)
    assert lim.pids == 64 + 8  # the runtime's own threads on top of the job's
    capped = build_plan(spec, Settings(max_wall_time=5, max_pids=70), image).limits
    assert (capped.wall_time, capped.pids) == (5, 70)
    assert build_plan(JobSpec(code="x"), Settings(), image).limits.cpu_time == 10  # python


def test_each_shipped_language_names_its_packages_and_programs():
    """scripts/install installs the packages; `sandbox languages` checks the programs."""
    for name, info in languages.load(languages.SHIPPED).items():
        assert info.packages, name
        assert info.programs(), name
        assert all(p.startswith("/") for p in info.programs()), name
        assert info.version or name == "sh", name  # sh has no version flag


def test_missing_programs_are_named(tmp_path: Path) -> None:
    info = languages.LanguageInfo(
        source="m.x", run=("/usr/bin/x", "m.x"), compile=("/usr/bin/xc", "m.x")
    )
    (tmp_path / "usr/bin").mkdir(parents=True)
    tool = tmp_path / "usr/bin/x"
    tool.write_text("")
    tool.chmod(0o755)
    assert info.missing(tmp_path) == ["/usr/bin/xc"]
