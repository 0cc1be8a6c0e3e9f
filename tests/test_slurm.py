"""The SLURM profile (workflow/profiles/slurm) for real: jobs go through `sbatch` to a one-node Slurm cluster on this
machine (scripts/slurm-local.sh), as on a cluster (issue #20).

The tests marked `slurm` need the cluster up; `make test-slurm` starts it, runs them and stops it. Without it they
skip with that reason. The first test needs no cluster: it checks, with the plugin's own code, which `sbatch`
options each stage of both profiles becomes."""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import copy_workflow

from diffact import workflow as wf

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm-local.sh"
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
# The demo at its smallest (64 px, 2 training steps per model): model build, data, extraction, the NN PCK screen
# and one notebook, the slice the issue asks for.
SLICE = {"demo_models": {"image_size": 64, "batch_size": 4, "vae_steps": 2, "unet_steps": 2, "lr": 1.0e-3, "seed": 0}}
TARGETS = ["results/correspondence/sd15-tiny/nn_pck.csv", "paper_figures/demo/demo_loss_curves.png"]
NODE_CORES = 2  # --max-threads: what `threads: all` becomes on the cluster, and --cores of the local run
# Polling: the plugin's first status check after 5 s instead of 40; squeue, as the local cluster has no accounting.
SLURM_ARGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5",
              "--max-threads", str(NODE_CORES)]
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


class _Resources(dict):
    """A job's resources as the plugin reads them: `.get(name)` and `.name`."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _sbatch_call(threads: int, resources: dict) -> str:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(threads=threads, resources=_Resources(resources))
    params = {"run_uuid": "run", "slurm_logfile": "log", "comment_str": "rule_x", "account": "", "partition": "",
              "workdir": "."}
    return get_submit_command(job, params) + set_gres_string(job)


@pytest.mark.parametrize("profile", ["config/config.yaml", "config/paper.yaml"])
def test_each_stage_becomes_cpus_mem_time_and_gpus_only_when_it_has_one(profile):
    config = yaml.safe_load((ROOT / profile).read_text())
    for stage in config["resources"]:
        resources = wf.stage_resources(config, stage)
        threads = wf.stage_threads(config, stage, cores=16)
        call = _sbatch_call(threads, resources)
        assert f"--cpus-per-task={threads}" in call, (profile, stage, call)
        assert f"--mem {resources['mem_mb']}" in call and f"-t {resources['runtime']}" in call, (profile, stage, call)
        gpus = re.findall(r"--gpus=(\d+)", call)
        assert gpus == ([str(resources["gpu"])] if resources["gpu"] else []), (profile, stage, call)
    gpu_stages = [stage for stage in config["resources"] if wf.stage_resources(config, stage)["gpu"]]
    assert bool(gpu_stages) == (profile == "config/paper.yaml")  # the paper's model stages ask for a GPU, no demo stage


# --- on the cluster ------------------------------------------------------------------------------------------------

def _cluster_is_up() -> bool:
    if shutil.which("sbatch") is None:
        return False
    return subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode == 0


@pytest.fixture
def slurm_cluster():
    if not _cluster_is_up():
        pytest.skip("no local Slurm cluster is up: `make test-slurm` starts one (scripts/slurm-local.sh start), "
                    "runs these tests and stops it")


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `diffact` inside each job
    return env


def _snakemake(workdir: Path, *args, timeout=1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _through_slurm(workdir: Path, *args, timeout=1200) -> subprocess.CompletedProcess:
    return _snakemake(workdir, "--profile", str(PROFILE), *SLURM_ARGS, *args, timeout=timeout)


def _copy_workflow(dest: Path) -> Path:
    dest.mkdir()
    copy_workflow(dest)
    (dest / "slice.yaml").write_text(yaml.safe_dump(SLICE))
    return dest


def _job_fields(jobid: str) -> dict:
    """`scontrol show job` of a finished job (kept for MinJobAge = 600 s) as a dict."""
    out = subprocess.run(["scontrol", "show", "job", "-o", jobid], capture_output=True, text=True, check=True).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def _rule_stages() -> dict[str, str]:
    """Each rule's resource stage, read from the rule files (`threads: stage_threads("<stage>")`); the extract
    rule's stage is the profile's (wf.extract_rule_stage)."""
    stages = {}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
            rule = re.match(r"rule (\w+):", block)
            stage = re.search(r'threads: stage_threads\("(\w+)"', block)
            if rule and stage:
                stages[rule.group(1)] = stage.group(1)
            elif rule and "threads: EXTRACT_THREADS" in block:
                stages[rule.group(1)] = "extract"
    return stages


def _time_limit(minutes: int) -> str:
    """Slurm's TimeLimit for `--time minutes`: [D-]HH:MM:SS."""
    days, rest = divmod(minutes, 1440)
    return f"{days}-" * bool(days) + f"{rest // 60:02d}:{rest % 60:02d}:00"


def _files(root: Path) -> dict[str, bytes]:
    """What a run wrote, but its logs (timestamps) and the executed notebooks (papermill's timings and cell ids)."""
    files = {}
    for top in ("results", "paper_figures"):
        for path in sorted((root / top).rglob("*")):
            relative = path.relative_to(root).as_posix()
            if path.is_file() and not relative.startswith("results/logs/") and path.suffix != ".ipynb":
                files[relative] = path.read_bytes()
    return files


@pytest.mark.slurm
def test_a_demo_slice_runs_through_sbatch_with_its_stages_resources_and_matches_a_local_run(slurm_cluster, tmp_path):
    on_slurm, local = _copy_workflow(tmp_path / "slurm"), _copy_workflow(tmp_path / "local")
    done = _through_slurm(on_slurm, *TARGETS, "--configfile", "slice.yaml")
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    planned = int(re.search(r"^total\s+(\d+)$", log, re.M).group(1))
    submitted = SUBMITTED.findall(log)
    assert len(submitted) == planned >= 5, log[-4000:]  # every job, none run on the submitting host

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["demo_models"].update(SLICE["demo_models"])
    stages, rules_seen = _rule_stages(), set()
    for jobid, _ in submitted:  # (the plugin deletes a successful job's Slurm log)
        fields = _job_fields(jobid)
        rule = re.match(r"rule_(\w+?)(_wildcards_|$)", fields["Comment"]).group(1)
        rules_seen.add(rule)
        stage = stages[rule]
        resources = wf.stage_resources(config, stage)
        # a demo model reserves the threads its training is pinned to (demo_models.threads), as its rule says
        fallback = wf.demo_model_threads(config) if rule == "build_demo_model" else None
        expected_cpus = wf.stage_threads(config, stage, cores=NODE_CORES, fallback=fallback)
        assert fields["JobState"] == "COMPLETED", (rule, fields["JobState"])
        assert (fields["NumCPUs"], fields["MinMemoryNode"], fields["TimeLimit"]) == (
            str(expected_cpus), f"{resources['mem_mb']}M", _time_limit(resources["runtime"])), (rule, stage)
        assert "gpu" not in fields.get("TRES", ""), (rule, fields.get("TRES"))  # the demo asks for no GPU
    assert {"build_demo_model", "extract", "pck_screen", "fig_demo_loss"} <= rules_seen

    done = _snakemake(local, "--cores", str(NODE_CORES), *TARGETS, "--configfile", "slice.yaml")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    slurm_files, local_files = _files(on_slurm), _files(local)
    assert sorted(slurm_files) == sorted(local_files)
    assert set(TARGETS) <= set(slurm_files)
    differing = [name for name in slurm_files if slurm_files[name] != local_files[name]]
    assert not differing, differing


def _one_rule_workflow(workdir: Path, shell: str) -> Path:
    workdir.mkdir()
    (workdir / "Snakefile").write_text(
        "rule step:\n"
        "    output: 'done.txt'\n"
        "    resources: mem_mb=100, runtime=5\n"
        f"    shell: {shell!r}\n")
    return workdir


@pytest.mark.slurm
def test_a_failed_job_is_reported_with_its_slurm_log_and_a_rerun_after_the_fix_completes(slurm_cluster, tmp_path):
    workdir = _one_rule_workflow(tmp_path / "fails", "test -e fixed || (echo 'step: not fixed yet' >&2; exit 3); "
                                                     "echo ok > {output}")
    done = _through_slurm(workdir, "--retries", "0")
    log = done.stdout + done.stderr
    assert done.returncode != 0, log[-3000:]
    [(jobid, slurm_log)] = SUBMITTED.findall(log)
    assert f"SLURM-job '{jobid}' failed" in log and slurm_log in log.split(f"SLURM-job '{jobid}' failed", 1)[1]
    assert "step: not fixed yet" in Path(slurm_log).read_text()
    assert _job_fields(jobid)["JobState"] == "FAILED"

    (workdir / "fixed").touch()  # the fix
    done = _through_slurm(workdir, "--retries", "0")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert (workdir / "done.txt").read_text() == "ok\n"


@pytest.mark.slurm
def test_a_job_cancelled_with_scancel_is_detected_and_resubmitted(slurm_cluster, tmp_path):
    # the first attempt marks itself and sleeps until cancelled; the resubmission (the profile's `retries: 1`) finishes
    workdir = _one_rule_workflow(tmp_path / "cancelled",
                                 "if [ -e started ]; then echo ok > {output}; else touch started; sleep 900; fi")
    run = subprocess.Popen([sys.executable, "-m", "snakemake", "--profile", str(PROFILE), *SLURM_ARGS], cwd=workdir,
                           env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (workdir / "started").exists():
            assert time.monotonic() < deadline and run.poll() is None, "the job never started"
            time.sleep(1)
        slurm_logs = list((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
        [first] = [path.stem for path in slurm_logs]
        subprocess.run(["scancel", first], check=True)
        log, _ = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, log[-3000:]
    jobids = [jobid for jobid, _ in SUBMITTED.findall(log)]
    assert jobids[0] == first and len(jobids) == 2 and jobids[1] != first, log[-3000:]
    assert f"SLURM-job '{first}' failed, SLURM status is: 'CANCELLED'" in log, log[-3000:]
    assert _job_fields(first)["JobState"] == "CANCELLED"
    assert (workdir / "done.txt").read_text() == "ok\n"
