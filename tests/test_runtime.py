import os
import subprocess
import sys

from spyglass import runtime


def test_allocator_tuning_reports_its_setting() -> None:
    # In a fresh interpreter, so the test process keeps glibc's defaults.
    code = (
        "from spyglass import runtime; before = runtime.allocator_setting(); "
        "ok = runtime.tune_allocator(); print(before, '|', ok, '|', runtime.allocator_setting())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    before, ok, after = (part.strip() for part in out.split("|"))
    assert before == "glibc default"
    if ok == "True":  # glibc
        assert after == "tuned (mallopt in process)"
    else:
        assert after == "glibc default"


def test_environment_setting_is_recognised(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "0")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "100000000000")
    assert runtime.allocator_setting().startswith("tuned (MALLOC_MMAP_MAX_=0")
