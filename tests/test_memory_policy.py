"""The extraction process's allocator policy (issue #19 point 4): memory freed between images is reused
without page faults, and ``diffact extract`` sets it."""

import subprocess
import sys

import pytest

from diffact.utils import memory

# Allocates, fills and frees a 64 MiB tensor (more than glibc's largest dynamic mmap threshold, like the
# full-size U-Net's biggest activations) twice and prints the page faults of the second round.
REFILL = """
import resource, sys, torch
from diffact.utils.memory import reuse_freed_memory
if sys.argv[1] == "policy":
    assert reuse_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    before = faults()
    x = torch.empty(16 * 2**20).fill_(1.0)
    del x
print(faults() - before)
"""
PAGES = 64 * 2**20 // 4096


def refill_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", REFILL, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="glibc only")
def test_freed_memory_is_reused_without_page_faults():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's malloc only")
    assert refill_faults("default") > PAGES // 2  # glibc gave the block back: every page faults again
    assert refill_faults("policy") < PAGES // 20


def test_extract_command_sets_the_policy(tiny_pipeline_dirs, image_folder, tmp_path, cli, monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "reuse_freed_memory", lambda: calls.append(1) or True)
    done = cli("extract", "--model", tiny_pipeline_dirs["sd15"], "--family", "sd15", "--layers", "mid-vit-out",
               "--dataset-kind", "folder", "--dataset-root", image_folder, "--out", tmp_path / "store",
               "--image-size", "64", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert calls == [1]
