#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, to run the workflow through workflow/profiles/slurm for real
# (README "Paper profile / cluster"; tests/test_slurm.py).
#
#   scripts/slurm-local.sh start    install slurm-wlm + munge if absent (apt, needs root), write a slurm.conf for
#                                   this machine's cores and memory, start munged, slurmctld, slurmd
#   scripts/slurm-local.sh status   the daemons this script started, and `sinfo`
#   scripts/slurm-local.sh stop     stop exactly the daemons it started (by their pid files), nothing else
#
# Everything lives under $SLURM_LOCAL_DIR (default ~/.cache/diffact/slurm-local): the config, pid files, state,
# logs and the munge key. No accounting database: snakemake-executor-plugin-slurm polls with `squeue`
# (status_command: squeue), which needs finished jobs to stay visible, hence MinJobAge=600. No GPUs (no GRES).
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-$HOME/.cache/diffact/slurm-local}"
CONF="$DIR/etc/slurm.conf"
SYSTEM_CONF=/etc/slurm/slurm.conf
PARTITION="${SLURM_LOCAL_PARTITION:-local}"
DAEMONS=(munged slurmctld slurmd)

log() { echo "slurm-local: $*" >&2; }

install_if_absent() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
            && command -v sbatch >/dev/null; then
        return
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "slurm-wlm and munge are not installed and this is not a root Debian shell: install them (apt-get install slurm-wlm munge)"
        exit 1
    fi
    log "installing slurm-wlm and munge (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >"$DIR/log/apt.log" 2>&1 \
        || { log "apt-get install failed; see $DIR/log/apt.log"; exit 1; }
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }  # the daemon may remove its pid file meanwhile

write_config() {
    local host cpus mem_mb user
    host="$(hostname -s)"
    cpus="$(nproc)"
    # RealMemory a little below the machine's, as slurmd refuses a node that reports less than it is configured with.
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 95 / 100 ))
    user="$(id -un)"
    cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: one node, one partition, no accounting, no GPUs.
ClusterName=diffact-local
SlurmctldHost=$host
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/run/munge.socket
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue must still show a job some minutes after it ended: the plugin polls squeue, not sacct
MinJobAge=600
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/d
SlurmctldPort=${SLURM_LOCAL_CTLD_PORT:-16817}
SlurmdPort=${SLURM_LOCAL_D_PORT:-16818}
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    mkdir -p "$DIR"/{etc,run,log,state/ctld,state/d,munge}
    install_if_absent
    write_config
    if ! pid_alive "$DIR/run/munged.pid"; then
        [ -s "$DIR/munge/munge.key" ] || { head -c 1024 /dev/urandom >"$DIR/munge/munge.key"; chmod 600 "$DIR/munge/munge.key"; }
        chmod 700 "$DIR/munge"
        munged --key-file="$DIR/munge/munge.key" --pid-file="$DIR/run/munged.pid" \
               --socket="$DIR/run/munge.socket" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munge.seed" \
               --force
    fi
    # Slurm's commands read /etc/slurm/slurm.conf unless SLURM_CONF says otherwise, and the plugin's job steps drop
    # SLURM_CONF from the environment of the `srun` inside each job: so the config must be at the default path.
    # Link it there, unless a slurm.conf that is not ours is there already (a real cluster's: refuse).
    if [ -e "$SYSTEM_CONF" ] && [ "$(readlink -f "$SYSTEM_CONF")" != "$(readlink -f "$CONF")" ]; then
        log "$SYSTEM_CONF exists and is not this script's; not replacing it (stop its cluster first)"
        exit 1
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -sfn "$CONF" "$SYSTEM_CONF"
    export SLURM_CONF="$CONF"
    pid_alive "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF"
    pid_alive "$DIR/run/slurmd.pid" || slurmd -f "$CONF"
    for _ in $(seq 30); do
        if sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
            log "up: partition $PARTITION on $(hostname -s) ($(nproc) CPUs), config $CONF (linked from $SYSTEM_CONF)"
            return
        fi
        sleep 1
    done
    log "the node did not come up within 30 s; see $DIR/log/slurmctld.log and $DIR/log/slurmd.log"
    exit 1
}

stop() {
    local name pidfile
    for name in slurmd slurmctld munged; do
        pidfile="$DIR/run/$name.pid"
        if pid_alive "$pidfile"; then
            kill "$(cat "$pidfile")"
            for _ in $(seq 20); do pid_alive "$pidfile" || break; sleep 0.5; done
            log "stopped $name"
        fi
        rm -f "$pidfile"
    done
    # the link start made, and only that
    if [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$CONF" ]; then
        rm -f "$SYSTEM_CONF"
    fi
}

status() {
    local name running=0
    for name in "${DAEMONS[@]}"; do
        if pid_alive "$DIR/run/$name.pid"; then
            echo "$name running (pid $(cat "$DIR/run/$name.pid"))"
            running=$((running + 1))
        else
            echo "$name not running"
        fi
    done
    if [ "$running" = "${#DAEMONS[@]}" ]; then
        sinfo
    else
        return 3
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
