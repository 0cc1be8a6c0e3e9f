"""The extraction process's allocator policy (issue #19 point 4): memory freed between images is reused
without page faults, and ``diffact extract`` sets it."""

from diffact.utils import memory


def test_the_policy_sets_glibcs_thresholds(monkeypatch):
    """What the policy asks of malloc: no trimming of the heap's free top, no own mapping below 1 GiB. (Its effect,
    page faults per full-size forward, is measured by benchmarks/bench_extraction.py: a small allocation pattern in
    a test faults or not depending on alignment and heap layout, so a fault count here would be flaky.)"""
    import platform

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: FakeLibc())
    assert memory.reuse_freed_memory() is True
    assert calls == [(memory.M_MMAP_THRESHOLD, 2**30), (memory.M_TRIM_THRESHOLD, 2**31 - 1)]
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", ""))
    assert memory.reuse_freed_memory() is False and len(calls) == 2


def test_extract_command_sets_the_policy(tiny_pipeline_dirs, image_folder, tmp_path, cli, monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "reuse_freed_memory", lambda: calls.append(1) or True)
    done = cli("extract", "--model", tiny_pipeline_dirs["sd15"], "--family", "sd15", "--layers", "mid-vit-out",
               "--dataset-kind", "folder", "--dataset-root", image_folder, "--out", tmp_path / "store",
               "--image-size", "64", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert calls == [1]
