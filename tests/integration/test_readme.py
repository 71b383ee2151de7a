"""The README's quick start names exactly two commands, and both work."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("##", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def test_quick_start_is_make_demo_and_make_test():
    assert _quick_start_commands() == ["make demo", "make test"]


@pytest.mark.integration
def test_make_demo_runs_the_whole_story(tmp_path: Path):
    env = {**os.environ, "CI": "true"}
    demo_dir = tmp_path / "demo"
    proc = subprocess.run(
        ["make", "-s", "demo", f"DEMO_ARGS=--small --dir {demo_dir}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "registered as champion" in out
    assert "promoted to champion" in out
    assert "Rejected" in out, "the corrupted candidate must be rejected"
    assert "champion moved from version" in out
    assert "the server swapped to version" in out and "the server swapped back to version" in out
    assert re.search(r"steady client: \d+ requests answered, 0 failed", out), "a hot swap must fail no request"
    assert (demo_dir / "keepfit.yaml").exists()
